// Child of benchmarks/onnx-memory.ts: creates one onnxruntime-node session on each .onnx file of argv[2]
// (comma-separated: an encoder–decoder export is two files, both held by one process) and prints the
// process's resident set (VmRSS from /proc/self/status, as the OS counts it) before and after, as JSON.
// Plain JS in a fresh process, so nothing but the runtime and the model is in the numbers.
'use strict';
const fs = require('node:fs');
const ort = require('onnxruntime-node');

const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;

(async () => {
  const [files, prepack] = process.argv.slice(2);
  const options = prepack === 'noprepack' ? { extra: { session: { disable_prepacking: '1' } } } : {};
  const before = rss();
  const sessions = [];
  for (const file of files.split(',')) sessions.push(await ort.InferenceSession.create(file, options));
  const after = rss();
  process.stdout.write(JSON.stringify({ before, after, inputs: sessions.reduce((s, x) => s + x.inputNames.length, 0) }) + '\n');
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
