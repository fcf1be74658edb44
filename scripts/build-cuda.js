#!/usr/bin/env node
'use strict';
// Builds the CUDA variant of the addon (npm run build:cuda) with cmake-js, offline, into build-cuda/.
//
//   node scripts/build-cuda.js           the addon: build-cuda/Release/ffmerge_cuda.node
//   node scripts/build-cuda.js --tests   also the C++ harness with the CUDA tests (build-cuda/ctest) and runs it
//
// The loader (lib/native/loader.ts) uses this build only when it loads and sees a device, else the CPU build.
// cmake-js downloads Node headers unless told where local ones are: we point it (npm_config_nodedir, which
// cmake-js reads like node-gyp does) at the headers shipped with the Node that runs us.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const withTests = process.argv.includes('--tests');

function log(msg) {
  process.stderr.write(`ffmerge: ${msg}\n`);
}

function findNvcc() {
  const exe = process.platform === 'win32' ? 'nvcc.exe' : 'nvcc';
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  if (process.env.CUDA_PATH) dirs.push(path.join(process.env.CUDA_PATH, 'bin'));
  dirs.push('/usr/local/cuda/bin');
  for (const dir of dirs) {
    const file = path.join(dir, exe);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

function localNodeDir() {
  const candidates = [
    path.dirname(path.dirname(process.execPath)),
    process.config.variables && process.config.variables.node_prefix,
  ].filter(Boolean);
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'include', 'node', 'node.h'))) || null;
}

function run(cmd, args, env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) {
    log(`could not run ${cmd}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status || 1);
}

const nvcc = findNvcc();
if (!nvcc) {
  log(
    'nvcc (the CUDA compiler) was not found on PATH, in $CUDA_PATH/bin or in /usr/local/cuda/bin, so the CUDA ' +
      'build cannot be made here. Install the CUDA toolkit (or add its bin folder to PATH) and run ' +
      '"npm run build:cuda" again. Nothing is lost: ffmerge keeps using its CPU build.',
  );
  process.exit(1);
}
log(`using ${nvcc}`);

const env = { ...process.env, CUDACXX: nvcc };
const nodedir = localNodeDir();
if (nodedir) {
  env.npm_config_nodedir = nodedir;
} else {
  log('Node headers were not found next to this Node binary; cmake-js will try to download them (needs network).');
}

// cmake-js is a development dependency: an installed package (npm install ffmerge) has none, and the build
// needs the repository's sources anyway (tester AZ: a stack trace right after "using nvcc").
let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {
  log(
    'the CUDA build needs cmake-js, a development dependency that an installed package does not have. Build it in ' +
      'a clone of the repository (npm install, then npm run build:cuda), or install cmake-js beside ffmerge ' +
      '(npm install --no-save cmake-js) and run this again. ffmerge keeps using its CPU build meanwhile.',
  );
  process.exit(1);
}
run(
  process.execPath,
  [cmakeJs, 'build', '--directory', root, '--out', path.join(root, 'build-cuda'), '--config', 'Release',
    '--parallel', String(os.availableParallelism()), '--CDFFMERGE_CUDA=ON'],
  env,
);
log('built build-cuda/Release/ffmerge_cuda.node (used when a CUDA device is visible; FFMERGE_BACKEND=cuda forces it)');

if (withTests) {
  const dir = path.join(root, 'build-cuda', 'ctest');
  run('cmake', ['-S', root, '-B', dir, '-DFFMERGE_BUILD_TESTS=ON', '-DFFMERGE_CUDA=ON', '-DCMAKE_BUILD_TYPE=Release'], env);
  run('cmake', ['--build', dir, '-j', String(os.availableParallelism())], env);
  run('ctest', ['--test-dir', dir, '--output-on-failure'], env);
}
