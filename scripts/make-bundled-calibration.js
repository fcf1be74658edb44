#!/usr/bin/env node
'use strict';
// One-off: builds models/llama-stories260k/calibration.txt, the calibration text bundled with the package,
// by decoding rows 0–47 (the "valid" split per eval.json) of the fixture's reference.safetensors `samples`
// — stories the model itself sampled — with its own tokenizer.json. Rows 48–95 (the test split) are left
// out so the bundled model can still be evaluated on held-out text. Output is committed; run again with
//   node scripts/make-bundled-calibration.js [path/to/shared/fixtures/llama-stories260k]
const fs = require('node:fs');
const path = require('node:path');
const { Tokenizer } = require('@huggingface/tokenizers');

const root = path.resolve(__dirname, '..');
const fixture = path.resolve(process.argv[2] ?? path.join(root, '..', 'shared', 'fixtures', 'llama-stories260k'));
const buf = fs.readFileSync(path.join(fixture, 'reference.safetensors'));
const n = Number(buf.readBigUInt64LE(0));
const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
const t = header.samples;
if (!t || t.dtype !== 'I32' || t.shape.length !== 2) throw new Error('reference.safetensors has no I32 [rows, len] "samples"');
const [rows, len] = t.shape;
const start = 8 + n + t.data_offsets[0];
const ids = new Int32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + start + rows * len * 4));
const tok = new Tokenizer(
  JSON.parse(fs.readFileSync(path.join(fixture, 'tokenizer.json'), 'utf8')),
  JSON.parse(fs.readFileSync(path.join(fixture, 'tokenizer_config.json'), 'utf8')),
);
const stories = [];
for (let r = 0; r < 48; r++) {
  const row = Array.from(ids.subarray(r * len, (r + 1) * len));
  stories.push(tok.decode(row, { skip_special_tokens: true }).trim());
}
const out = path.join(root, 'models', 'llama-stories260k', 'calibration.txt');
fs.writeFileSync(out, stories.join('\n\n') + '\n');
process.stdout.write(`wrote ${out}: ${stories.length} stories, ${fs.statSync(out).size} bytes\n`);
