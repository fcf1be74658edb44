#!/usr/bin/env node
'use strict';
// The ffmerge CLI entry. An installed package runs the compiled dist/ (built by `npm run build`, which
// `prepare` runs on install from git); a source checkout without dist/ runs lib/ through ts-node in
// transpile-only mode (a dev dependency). FFMERGE_FROM_SOURCE=1 forces the source path (used by the tests, so
// a stale dist/ can never be what they exercise).
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist', 'lib', 'cli', 'main.js');
let cli;
if (fs.existsSync(dist) && process.env.FFMERGE_FROM_SOURCE !== '1') {
  cli = require(dist);
} else {
  require('ts-node').register({ transpileOnly: true, project: path.join(root, 'tsconfig.json') });
  cli = require(path.join(root, 'lib', 'cli', 'main.ts'));
}
cli.main(process.argv).then((code) => {
  process.exitCode = code;
});
