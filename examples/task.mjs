// A task of your own: the bundled model scored by top-1 next-token accuracy (a metric none of ffmerge's tasks
// has) on data the task reads itself. The CLI loads the same export: ffmerge compress --plugins task.mjs.
// Run: node examples/task.mjs
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { argmaxRows, compress, loadTokenizer, tokenizeToBlocks } from 'ffmerge';

/** Forward batches of `blocks` token blocks (all of one length here). */
function batches(blocks, perBatch) {
  const out = [];
  for (let i = 0; i < blocks.length; i += perBatch) {
    const rows = blocks.slice(i, i + perBatch);
    const seq = rows[0].length;
    const ids = new Int32Array(rows.length * seq);
    rows.forEach((r, j) => ids.set(r, j * seq));
    out.push({ ids, batch: rows.length, seq });
  }
  return out;
}

async function nextTokenAccuracy(model, inputs, signal) {
  let right = 0;
  let total = 0;
  for (const input of inputs) {
    const { logits } = await model.forward(input, { output: 'logits', signal });
    const pred = argmaxRows(logits, model.spec.vocab);
    for (let i = 0; i < input.ids.length; i++) {
      if ((i + 1) % input.seq === 0) continue; // the last position of a row has no next token
      total++;
      if (pred[i] === input.ids[i + 1]) right++;
    }
  }
  return right / total;
}

export const tasks = [
  {
    name: 'next-token',
    description: 'top-1 next-token accuracy on calibration.txt',
    optionKeys: [], // its data is its own: compress's data options are refused for it
    accepts: (summary) => summary.modelType === 'llama',
    check() {},
    async create({ dir }) {
      const tokenizer = await loadTokenizer(dir);
      const { blocks } = tokenizeToBlocks(tokenizer, fs.readFileSync(path.join(dir, 'calibration.txt'), 'utf8'), 128);
      const [calibration, validation] = [batches(blocks.slice(0, 32), 8), batches(blocks.slice(32, 64), 8)];
      const score = (model, _start, { signal } = {}) => nextTokenAccuracy(model, validation, signal);
      return {
        metric: { name: 'next-token accuracy', higherIsBetter: true },
        calibration: calibration.map((input) => ({ input, featureRows: input.batch * input.seq })),
        data: { unit: 'tokens', calibration: 32 * 128, validation: 32 * 128, search: 32 * 128, notes: ['validation: blocks 32-63 of calibration.txt'] },
        async prepare() {},
        search: score,
        validate: score,
      };
    },
  },
];

// run as a script (not loaded by --plugins): compress the bundled model scored by it
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('ffmerge/package.json')), 'models', 'llama-stories260k');
  const r = await compress(dir, { k: 2, plugins: { tasks } });
  const pct = (v) => `${(100 * v).toFixed(1)}%`;
  console.log(`task ${r.task}: window ${r.windows[0].window}, ${r.metric.name} ${pct(r.base.validation)} -> ${pct(r.merged.validation)}`);
}
