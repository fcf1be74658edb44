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

function log(msg) {
  process.stderr.write(`ffmerge: ${msg}\n`);
}

if (!force) {
  // A prebuilt binary for this platform (prebuildify) makes compiling unnecessary.
  try {
    const found = require('node-gyp-build').resolve(root);
    if (found && found.includes(`${path.sep}prebuilds${path.sep}`)) {
      log(`using prebuilt addon ${path.relative(root, found)}`);
      process.exit(0);
    }
  } catch {
    /* no prebuild for this platform: build from source */
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

const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
const args = [nodeGyp, 'rebuild', `--jobs=${Math.max(1, require('node:os').availableParallelism())}`];
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
