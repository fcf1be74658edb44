#!/usr/bin/env node
'use strict';
// Prints the C++ sources of the addon for binding.gyp (node-gyp has no globbing): every .cc under
// native/core and native/binding. CUDA sources (native/cuda) and the standalone tests are not part of the
// CPU addon.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
function walk(dir) {
  const out = [];
  for (const ent of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${ent.name}`;
    if (ent.isDirectory()) out.push(...walk(rel));
    else if (ent.name.endsWith('.cc')) out.push(rel);
  }
  return out;
}
process.stdout.write(['native/core', 'native/binding'].flatMap(walk).sort().join(' '));
