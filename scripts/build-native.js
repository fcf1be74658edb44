#!/usr/bin/env node
'use strict';
// Builds the CPU addon with node-gyp, offline.
//
// Why a script and not a bare `node-gyp rebuild`: node-gyp downloads Node's headers unless it is told where
// the local ones are, and this package must build with no network. We point it at the headers of the Node
// that runs us (they ship with Node in <prefix>/include/node), and only fall back to node-gyp's default when
// they are missing, with a message that says why the download it then attempts may fail.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const force = process.argv.includes('--force');
// A git checkout always builds from its own sources (incrementally once configured): a prebuild left there by
// `npm pack` (prepack), or an addon built before the C++ changed, was used without a word (tester ES).
const checkout = fs.existsSync(path.join(root, '.git'));

function log(msg) {
  process.stderr.write(`ffmerge: ${msg}\n`);
}

// The native core reads files with POSIX calls (mmap, pread, nftw): a Windows compile fails deep in the build
// with a missing header, so it is refused here with the reason (tester FE).
if (process.platform === 'win32') {
  log('Windows is not supported: the native core uses POSIX file calls (mmap, pread). Use WSL2 (Linux), where the prebuilt linux-x64 addon installs.');
  process.exit(1);
}

if (checkout && !force) {
  log('a git checkout: building the addon from its sources (node-gyp, incremental when already configured)');
} else if (!force) {
  // A prebuilt binary for this platform (shipped in the package tarball, see scripts/prebuild.js) makes
  // compiling unnecessary. It is used only if it actually loads here (e.g. a glibc older than the one it was
  // built against makes it fail), and either way the install says which happened.
  let found;
  try {
    found = require('node-gyp-build').resolve(root);
  } catch {
    found = undefined;
  }
  if (found && found.includes(`${path.sep}prebuilds${path.sep}`)) {
    try {
      const info = require(found).buildInfo();
      log(`using the prebuilt addon ${path.relative(root, found)} (no compiler needed; GEMM kernel on this CPU: ${info.gemmKernel})`);
      process.exit(0);
    } catch (e) {
      log(`the prebuilt addon ${path.relative(root, found)} does not load here (${String(e.message).split('\n')[0]}); compiling from source`);
    }
  } else if (found) {
    log(`using the addon already built from source at ${path.relative(root, found)}`);
    process.exit(0);
  } else {
    log(`no prebuilt addon for ${process.platform}-${process.arch}; compiling from source (needs a C++17 compiler, python3, make)`);
  }
}

function localNodeDir() {
  const candidates = [
    path.dirname(path.dirname(process.execPath)),
    process.config.variables && process.config.variables.node_prefix,
  ].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  }
  return null;
}

// node-gyp: the project's own (a dev dependency in a clone), else the one npm bundles and names in
// npm_config_node_gyp while it runs install scripts, so consumers do not install node-gyp's ~90 packages
// only for the rare platform without a prebuild.
function nodeGypScript() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const bundled = process.env.npm_config_node_gyp;
    if (bundled && fs.existsSync(bundled)) return bundled;
    log('node-gyp was not found (run this through npm, e.g. "npm rebuild ffmerge", or install node-gyp)');
    process.exit(1);
  }
}
const nodeGyp = nodeGypScript();
const incremental = checkout && !force && fs.existsSync(path.join(root, 'build', 'Makefile'));
const args = [nodeGyp, incremental ? 'build' : 'rebuild', `--jobs=${Math.max(1, require('node:os').availableParallelism())}`];
const nodedir = localNodeDir();
if (nodedir) {
  args.push(`--nodedir=${nodedir}`);
} else {
  log('Node headers were not found next to this Node binary; node-gyp will try to download them (needs network).');
}
const res = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (res.status !== 0) {
  log('building the native addon failed: a C++17 compiler (g++ or clang++) and python3 are required.');
  process.exit(res.status || 1);
}
// A shared object links with symbols left to resolve at load: a build missing a library (GCC 8's
// std::filesystem was one, tester FE) installed "fine" and failed at the first require. Loaded here, it fails
// the install instead, with the loader's own message.
try {
  require(path.join(root, 'build', 'Release', 'ffmerge.node')).buildInfo();
} catch (e) {
  log(`the addon just built does not load: ${String(e.message).split('\n')[0]}`);
  process.exit(1);
}
