#!/usr/bin/env node
'use strict';
// Builds the prebuilt addon that ships in the package tarball, with prebuildify: prebuilds/<platform>-<arch>/ffmerge[.glibc].node.
// `npm pack` / `npm publish` run it (prepack), so the tarball always carries a binary built from the sources
// it ships, and no binary is committed to git.
//
// Baseline CPU: the binary must run on any x86-64 (or arm64) machine, so it is compiled with the compiler's
// default target, never -march=native; the AVX2/AVX-512 kernels are compiled per function
// (__attribute__((target(...)))) and chosen at run time (native/core/gemm.cc, assignment_kernels.cc).
// CFLAGS/CXXFLAGS from the environment are dropped for the same reason, and the flags node-gyp generated are
// checked before the binary is accepted.
//
// N-API (NAPI_VERSION=8 in binding.gyp): one binary serves every Node ≥ 20.9 of that platform, so no per-ABI
// builds are needed. libstdc++ is linked statically and libgcc_s dynamically (Node itself loads it; binding.gyp),
// so the binary needs only glibc, at least GLIBC_FLOOR: checked below, as the README promises it.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
// The newest glibc symbol version the prebuild may need (RHEL 9, Ubuntu 22.04); README.md says the same.
const GLIBC_FLOOR = '2.34';
const log = (msg) => process.stderr.write(`ffmerge prebuild: ${msg}\n`);

const env = { ...process.env };
for (const k of ['CFLAGS', 'CXXFLAGS', 'CPPFLAGS', 'LDFLAGS', 'CC', 'CXX']) delete env[k];
// prebuildify drives node-gyp and names the binary with its platform tags (…/linux-x64/ffmerge.glibc.node: N-API,
// so one file per platform). node-gyp would download Node's headers for the target version; the headers of the
// Node running us ship with it, and nodedir points node-gyp at them (offline).
const nodedir = [path.dirname(path.dirname(process.execPath)), process.config.variables && process.config.variables.node_prefix]
  .filter(Boolean)
  .find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
if (nodedir) env.npm_config_nodedir = nodedir;
else log('Node headers were not found next to this Node binary; node-gyp will try to download them (needs network).');
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.rmSync(dir, { recursive: true, force: true });
const build = spawnSync(process.execPath, [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--tag-libc'], { cwd: root, stdio: 'inherit', env });
if (build.status !== 0) process.exit(build.status || 1);

// The flags actually used (gyp writes them into the generated makefile).
const mk = path.join(root, 'build', 'ffmerge.target.mk');
if (fs.existsSync(mk)) {
  const text = fs.readFileSync(mk, 'utf8');
  const release = text.slice(text.indexOf('CFLAGS_Release'), text.indexOf('INCS_Release'));
  const bad = release.match(/-march=\S+|-mtune=native|-mavx\S*|-msse4\S*|-mfma\b|-mcpu=native/g);
  if (bad) {
    fs.rmSync(dir, { recursive: true, force: true });
    log(`refusing: the release flags target a specific CPU (${bad.join(' ')}); a prebuild must run on a baseline CPU`);
    process.exit(1);
  }
}

const built = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
if (built.length !== 1) {
  log(`expected one prebuilt binary in ${path.relative(root, dir)}, found ${built.length}`);
  process.exit(1);
}
const dest = path.join(dir, built[0]);
// The glibc it needs: the newest GLIBC_x.y its dynamic symbols ask for (objdump ships with the linker that just
// ran). One newer symbol refuses the whole binary on an older system, so a toolchain change that adds one
// (native/binding/glibc_floor.cc says how one was avoided) fails here, not on a user's machine.
if (process.platform === 'linux') {
  const dump = spawnSync('objdump', ['-T', dest], { encoding: 'utf8' });
  if (dump.status !== 0) {
    log(`refusing: objdump -T could not read the binary to check its glibc floor (${(dump.stderr || dump.error || '').toString().trim()})`);
    process.exit(1);
  }
  const newer = (a, b) => {
    const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) > (y[i] || 0);
    return false;
  };
  const over = [...new Set([...dump.stdout.matchAll(/\s\(?GLIBC_([\d.]+)\)?\s+(\S+)/g)].filter((m) => newer(m[1], GLIBC_FLOOR)).map((m) => `${m[2]}@GLIBC_${m[1]}`))];
  if (over.length) {
    fs.rmSync(dir, { recursive: true, force: true });
    log(`refusing: the binary needs a glibc newer than ${GLIBC_FLOOR} (${over.join(', ')})`);
    process.exit(1);
  }
  // The static libstdc++ stays the addon's own (binding.gyp: --exclude-libs, hidden visibility): exported, its
  // 2,330 symbols let the process bind the addon's calls to another copy (tester CG). What is left is the Node-API
  // entry points and a few template instances libstdc++'s headers mark visible.
  const defined = dump.stdout.split('\n').filter((l) => /\sDF\s+\.text\s/.test(l) || /\sDO\s+\.(data|bss|rodata)/.test(l));
  const runtime = defined.filter((l) => /\s(__cxa_\w+|__gxx_personality_v0|_ZNSt\w*(locale|ios_base|basic_streambuf|runtime_error|logic_error|exception)\w*)$/.test(l));
  if (runtime.length > 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    log(`refusing: the binary exports ${runtime.length} symbols of its static C++ runtime (e.g. ${runtime[0].trim().split(/\s+/).pop()}); link with -Wl,--exclude-libs,ALL`);
    process.exit(1);
  }
}
// The binary must load in this Node before it is shipped.
const mod = require(dest);
const info = mod.buildInfo();
log(`wrote ${path.relative(root, dest)} (${(fs.statSync(dest).size / 1e6).toFixed(1)} MB; GEMM kernel here: ${info.gemmKernel})`);
