// Library use from CommonJS: compress the small model bundled with ffmerge, then load the compressed
// checkpoint (ties restored) and run it. Run: node examples/compress.cjs
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { compress, loadModel, loadTokenizer } = require('ffmerge');

const model = path.join(path.dirname(require.resolve('ffmerge/package.json')), 'models', 'llama-stories260k');

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-example-'));
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort()); // Ctrl-C: the job stops and its temporary output is removed
  try {
    const r = await compress(model, {
      k: 2, // merge 2 adjacent FF sublayers into one; window: 'auto' searches every start
      calibration: path.join(model, 'calibration.txt'),
      calibrationTokens: 6144, // the rest of the file validates the candidates
      out: path.join(work, 'merged'),
      signal: ac.signal,
      onProgress: (p) => process.stderr.write(`\r${p.phase} ${p.done}/${p.total}   `),
    });
    process.stderr.write('\n');
    console.log(`window ${r.windows[0].window}: perplexity ${r.base.validation.toFixed(2)} -> ${r.merged.validation.toFixed(2)}, ` +
      `${r.params.removed} of ${r.params.before} parameters removed`);

    const merged = await loadModel(r.out.dir); // the tied format: each merged FF stored once, shared on load
    const tok = await loadTokenizer(r.out.dir);
    const ids = Int32Array.from(tok.encode('Once upon a time'));
    const { logits } = await merged.forward({ ids, batch: 1, seq: ids.length }, { output: 'logits', signal: ac.signal });
    const vocab = logits.length / ids.length;
    const last = logits.subarray(logits.length - vocab);
    // the arg max by a reduce: Math.max(...last) spreads the vocabulary as arguments, past V8's limit at 128k+
    const best = last.reduce((b, v, i) => (v > last[b] ? i : b), 0);
    console.log(`next token after "Once upon a time": ${JSON.stringify(tok.decode([best]))}`);
    merged.dispose();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`${e.message} [${e.code}]`);
  process.exitCode = 1;
});
