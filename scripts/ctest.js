#!/usr/bin/env node
'use strict';
// Builds the numeric core with CMake and runs the standalone C++ harness (native/tests) under ctest.
// Same sources as the addon, no Node involved: the harness the GPU machine runs too.
const { spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const build = path.join(root, 'build-ctest');
const extra = process.argv.slice(2);
function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) {
    process.stderr.write(`ffmerge: could not run ${cmd}: ${r.error.message} (CMake ≥ 3.18 is needed for the C++ tests)\n`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status || 1);
}
run('cmake', ['-S', root, '-B', build, '-DFFMERGE_BUILD_TESTS=ON', '-DCMAKE_BUILD_TYPE=Release', ...extra]);
run('cmake', ['--build', build, '-j', String(os.availableParallelism())]);
run('ctest', ['--test-dir', build, '--output-on-failure']);
