// Recovery fine-tuning from the library: compress the bundled model with the paper's plain merge, fine-tune the
// merged checkpoint with its ties kept (the shared FF stays one tensor), and save it at the same size.
// Run: node examples/finetune.cjs
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { compress, finetune, saveTrained, loadModel, tokenizeFile } = require('ffmerge');

const model = path.join(path.dirname(require.resolve('ffmerge/package.json')), 'models', 'llama-stories260k');
const text = path.join(model, 'calibration.txt'); // text the model sampled itself

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-example-'));
  try {
    const r = await compress(model, { k: 2, window: '3-4', method: 'permute', recover: 'none', calibration: text, out: path.join(work, 'merged') });

    // the text's first 10,240 tokens train (compress calibrated on the same ones), the blocks of 128 after them validate
    const ids = await tokenizeFile(model, text);
    const validation = [];
    for (let at = 10240; at + 128 <= ids.length; at += 128) validation.push(ids.subarray(at, at + 128));
    const merged = await loadModel(r.out.dir);
    const t = await finetune(merged, { data: ids.subarray(0, 10240), validation, steps: 30, batch: 8, seq: 128, lr: 5e-4 });
    const saved = await saveTrained(t.model, { source: r.out.dir, out: path.join(work, 'merged-ft'), info: { finetune: { steps: 30 } } });
    console.log(`validation loss ${t.valBefore.toFixed(3)} -> ${t.valAfter.toFixed(3)} in ${t.log.length} steps; ` +
      `${r.out.bytes} -> ${saved.bytes} bytes (ties kept)`);
    t.model.dispose();
    merged.dispose();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`${e.message} [${e.code}]`);
  process.exitCode = 1;
});
