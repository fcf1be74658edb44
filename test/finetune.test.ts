/**
 * Fine-tuning end to end on small synthetic models: the loss goes down on a fixed batch, progress and abort
 * work between steps (an abort also inside a micro-batch), `ffmerge finetune` on a merged `tied` checkpoint keeps the tie and the file size, and
 * the `finetune` recover method returns a trained merged FF.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ffReplacements, ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { loadModel } from '../lib/model/load';
import { finetune, type FinetuneProgress } from '../lib/train/finetune';
import { saveTrained } from '../lib/train/save';
import { inspectModel } from '../lib/model/inspect';
import { formatSummary } from '../lib/cli/inspect';
import { exportOnnx } from '../lib/export/onnx/export';
import { finetuneRecover } from '../lib/pipeline/recover/finetune';
import type { MergeContext, MergedWindow } from '../lib/pipeline/plugins';
import { removeSyntheticDirs, syntheticGpt2, syntheticLlama, tempDir } from './helpers/synthetic-model';

afterAll(removeSyntheticDirs);
jest.setTimeout(120_000);

const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
/** The CLI from source, in a child process. */
const ffmerge = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' }, timeout: 120_000 });

function pattern(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7 + Math.floor(i / 3)) % vocab);
}

test('the loss goes down monotonically on a fixed batch at a small learning rate', async () => {
  const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 31 });
  const m = await loadModel(s.dir);
  try {
    // seq + 1 tokens: exactly one window, so every step sees the same batch
    const r = await finetune(m, { data: pattern(13, 19), steps: 6, batch: 2, seq: 12, lr: 3e-3, clip: 0 });
    expect(r.log).toHaveLength(6);
    for (let i = 1; i < r.log.length; i++) expect(r.log[i]!.loss).toBeLessThan(r.log[i - 1]!.loss);
    // the trained model is a new one; the input is unchanged
    const before = m.ffWeights(0).wIn[0];
    expect(r.model.ffWeights(0).wIn[0]).not.toBe(before);
    r.model.dispose();
  } finally {
    m.dispose();
  }
});

test('progress reports step, loss, tokens/s and ETA; an AbortSignal stops between steps', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 32 });
  const m = await loadModel(s.dir);
  try {
    const seen: FinetuneProgress[] = [];
    const ac = new AbortController();
    const run = finetune(m, {
      data: pattern(500, 23),
      steps: 1000,
      batch: 4,
      seq: 16,
      signal: ac.signal,
      onProgress: (p) => {
        seen.push(p);
        if ((p.step ?? 0) >= 2) ac.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
    const last = seen.filter((p) => p.step !== undefined).pop()!;
    expect(last.phase).toBe('finetune');
    expect(last.total).toBe(1000);
    expect(last.loss).toBeGreaterThan(0);
    expect(last.tokensPerSecond).toBeGreaterThan(0);
    expect(last.etaSeconds).toBeGreaterThan(0);
  } finally {
    m.dispose();
  }
});

test('a batch far beyond memory costs one micro-batch of it, and an abort stops it between micro-batches', async () => {
  // The step's window offsets used to be allocated up front, 8 bytes per sequence: a batch of 1e9 took 8 GB
  // before the first cancellation check (and ignored the abort that long); this one failed OUT_OF_MEMORY.
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 35 });
  const m = await loadModel(s.dir);
  try {
    // with validation or not, the first event comes before the job starts: an abort there stops it too
    for (const validation of [undefined, [pattern(16, 23)]]) {
      const ac = new AbortController();
      let reports = 0;
      const run = finetune(m, {
        data: pattern(500, 23),
        steps: 1,
        batch: 1e13,
        micro: 4,
        seq: 16,
        ...(validation ? { validation } : {}),
        signal: ac.signal,
        onProgress: () => {
          reports++;
          ac.abort();
        },
      });
      await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
      expect(reports).toBeGreaterThan(0);
    }
  } finally {
    m.dispose();
  }
});

// A micro-batch is sized to ~1 GiB of activations (tens of seconds at GPT-2-small width on two cores), and an
// abort used to be heard only between micro-batches: it now stops the matrix products themselves. The bound is
// relative to one micro-batch measured in the same run (it took 540 ms after a 30 % abort before; 4-9 ms now).
test('an abort stops a micro-batch midway, not at its end', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 256, heads: 4, ff: 1024, vocab: 50, positions: 128, seed: 36 });
  const m = await loadModel(s.dir);
  try {
    const data = pattern(5000, 50);
    let t = performance.now();
    (await finetune(m, { data, steps: 1, batch: 16, micro: 16, seq: 128 })).model.dispose();
    const one = performance.now() - t;
    const ac = new AbortController();
    const run = finetune(m, { data, steps: 1, batch: 160, micro: 16, seq: 128, signal: ac.signal });
    let abortedAt = 0;
    setTimeout(() => {
      abortedAt = performance.now();
      ac.abort();
    }, one * 0.3);
    await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
    expect(abortedAt).toBeGreaterThan(0);
    // Heard only between micro-batches, the abort (at 30 % of the first) would wait out the other 70 %; under
    // 60 % tells the two apart with room for a loaded machine (a CI run took 120 ms where one was 362 ms).
    expect(performance.now() - abortedAt).toBeLessThan(one * 0.6);
  } finally {
    m.dispose();
  }
});

// finetune wrote one file whatever the source's sharding; it takes --max-shard-size as compress and convert do
test('ffmerge finetune --max-shard-size writes a sharded output that loads to the trained model', async () => {
  const bundled = path.join(__dirname, '..', 'models', 'llama-stories260k');
  const out = path.join(tempDir('ft-shards'), 'out');
  const r = ffmerge(['finetune', bundled, '--data', path.join(bundled, 'calibration.txt'), '--steps', '1', '--batch', '2', '--seq', '32', '--max-shard-size', '100KB', '--out', out, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const shards = fs.readdirSync(out).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
  expect(shards.length).toBeGreaterThan(2);
  expect(fs.existsSync(path.join(out, 'model.safetensors.index.json'))).toBe(true);
  const m = await loadModel(out);
  m.dispose();
  const bad = ffmerge(['finetune', bundled, '--data', path.join(bundled, 'calibration.txt'), '--steps', '1', '--max-shard-size', 'lots', '--out', path.join(tempDir('ft-shards'), 'bad')]);
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/max-shard-size/);
});

test('ffmerge finetune says so when the validation loss rose over the run (tester DQ: saved without a word)', () => {
  const bundled = path.join(__dirname, '..', 'models', 'llama-stories260k');
  const dir = tempDir('ft-rose');
  // training on one token repeated moves the model away from the stories it is validated on
  const data = path.join(dir, 'one-token.jsonl');
  fs.writeFileSync(data, Array.from({ length: 8 }, () => JSON.stringify({ input_ids: Array(64).fill(100) })).join('\n') + '\n');
  const args = ['finetune', bundled, '--data', data, '--valid', path.join(bundled, 'calibration.txt'), '--valid-tokens', '512', '--steps', '3', '--batch', '2', '--seq', '32', '--lr', '1e-3'];
  const r = ffmerge([...args, '--out', path.join(dir, 'out')]);
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/\nnote: the validation loss rose over this run \((\d+\.\d+) → (\d+\.\d+)\); the weights saved are the last step's/);
  const [, before, after] = r.stdout.match(/rose over this run \((\d+\.\d+) → (\d+\.\d+)\)/)!;
  expect(Number(after)).toBeGreaterThan(Number(before));
  // --json carries it in its notes (tester DW: only the numbers)
  const j = JSON.parse(ffmerge([...args, '--out', path.join(dir, 'out-json'), '--json']).stdout);
  expect(j.valAfter).toBeGreaterThan(j.valBefore);
  expect(j.notes).toEqual([expect.stringMatching(/^the validation loss rose over this run/)]);
});

test('ffmerge finetune says when --tokens or --valid-tokens asks for more than the data holds (tester EP)', () => {
  const bundled = path.join(__dirname, '..', 'models', 'llama-stories260k');
  const dir = tempDir('ft-budget');
  const data = path.join(dir, 'rows.jsonl');
  fs.writeFileSync(data, Array.from({ length: 4 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 64 }, (_, j) => 1 + ((i * 7 + j) % 400)) })).join('\n') + '\n');
  const args = ['finetune', bundled, '--data', data, '--tokens', '100000', '--valid', path.join(bundled, 'calibration.txt'), '--valid-tokens', '100000', '--steps', '1', '--batch', '2', '--seq', '32', '--json'];
  const j = JSON.parse(ffmerge([...args, '--out', path.join(dir, 'out')]).stdout) as { notes?: string[] };
  expect(j.notes).toEqual(expect.arrayContaining([
    'training: all 256 tokens the data holds, fewer than the 100,000 --tokens asks',
    expect.stringMatching(/^validation: all [\d,]+ tokens the data holds, fewer than the 100,000 --valid-tokens asks$/),
  ]));
  const fits = JSON.parse(ffmerge([...args.slice(0, 4), '--tokens', '128', '--steps', '1', '--batch', '2', '--seq', '32', '--json', '--out', path.join(dir, 'out2')]).stdout);
  expect(fits).toMatchObject({ ok: true });
  expect(fits).not.toHaveProperty('notes');
});

test('an empty validation list is refused, not read as no validation', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 37 });
  const m = await loadModel(s.dir);
  try {
    await expect(finetune(m, { data: pattern(200, 23), steps: 1, batch: 2, seq: 8, validation: [] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('validation is an empty list') });
  } finally {
    m.dispose();
  }
});

test('a progress callback that throws stops the training, and the call rejects with its error', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 34 });
  const m = await loadModel(s.dir);
  try {
    const bug = new Error('bug in the caller');
    let calls = 0;
    const run = finetune(m, {
      data: pattern(500, 23),
      steps: 100000,
      batch: 4,
      seq: 16,
      onProgress: () => {
        calls++;
        throw bug;
      },
    });
    await expect(run).rejects.toBe(bug);
    expect(calls).toBe(1);
    await expect(finetune(m, { data: pattern(50, 23), steps: 1, signal: {} as AbortSignal })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  } finally {
    m.dispose();
  }
});

test('a model fine-tuning does not cover is refused with a typed error', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 33 });
  const m = await loadModel(s.dir);
  try {
    await expect(finetune(m, { data: pattern(10, 23), steps: 1, batch: 1, seq: 32 })).rejects.toMatchObject({ code: 'SEQUENCE_TOO_LONG' });
    await expect(finetune(m, { data: pattern(5, 23), steps: 1, batch: 1, seq: 8 })).rejects.toMatchObject({ code: 'INVALID_DATA' });
  } finally {
    m.dispose();
  }
});

test('a rotary model is held to its positions in TS; bad validation data and an eval interval past the last step are refused', async () => {
  // the trainer checks only a learned position table: a llama with 16 positions trained seq 17 and scored 40-token blocks
  const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 40, config: { max_position_embeddings: 16 } });
  const m = await loadModel(s.dir);
  try {
    const data = pattern(200, 19);
    await expect(finetune(m, { data, steps: 1, batch: 1, seq: 17 })).rejects.toMatchObject({ code: 'SEQUENCE_TOO_LONG', message: expect.stringContaining('seq 17 is longer than the model\'s 16 positions') });
    await expect(finetune(m, { data, steps: 1, batch: 1, seq: 8, validation: [pattern(40, 19)] })).rejects.toMatchObject({ code: 'SEQUENCE_TOO_LONG', message: expect.stringContaining('validation blocks are 40 tokens') });
    // a validation token outside the vocabulary is data, as a training one is (was INVALID_ARGUMENT)
    const bad = pattern(12, 19);
    bad[3] = 19;
    await expect(finetune(m, { data, steps: 1, batch: 1, seq: 8, validation: [bad] })).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining('validation token id 19 is outside the vocabulary') });
    await expect(finetune(m, { data, steps: 1, batch: 1, seq: 8, validation: [bad.map(() => 1)], evalEvery: 2 })).rejects.toMatchObject({ code: 'OPTION_NOT_APPLICABLE', message: expect.stringContaining('no evaluation would run') });
  } finally {
    m.dispose();
  }
});

test('an onProgress that throws at the first event fails the call with its own error, validation or not (tester EZ: a TypeError)', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 42 });
  const m = await loadModel(s.dir);
  try {
    const bug = new Error('my db is down');
    for (const validation of [[pattern(12, 23)], undefined]) {
      await expect(finetune(m, { data: pattern(200, 23), steps: 2, batch: 2, seq: 12, ...(validation ? { validation } : {}), onProgress: () => { throw bug; } })).rejects.toBe(bug);
    }
  } finally {
    m.dispose();
  }
});

test('without validation the first event is sent as the job starts, at step 0 (tester FG: none until the first step ended)', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 44 });
  const m = await loadModel(s.dir);
  try {
    const seen: FinetuneProgress[] = [];
    const r = await finetune(m, { data: pattern(200, 23), steps: 3, batch: 2, seq: 12, onProgress: (p) => seen.push(p) });
    r.model.dispose();
    expect(seen[0]).toEqual({ phase: 'finetune', done: 0, total: 3 });
  } finally {
    m.dispose();
  }
});

test('the last progress event names the last step with no time left', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 41 });
  const m = await loadModel(s.dir);
  try {
    const seen: FinetuneProgress[] = [];
    const r = await finetune(m, { data: pattern(200, 23), steps: 5, batch: 2, seq: 12, validation: [pattern(12, 23)], evalEvery: 5, onProgress: (p) => seen.push(p) });
    r.model.dispose();
    // before: { done: 5, total: 5, step: 4, etaSeconds: > 0 }, the last step never reported
    expect(seen[seen.length - 1]).toMatchObject({ phase: 'finetune', done: 5, total: 5, step: 5, etaSeconds: 0, loss: r.log[4]!.loss, valLoss: r.log[4]!.valLoss });
    expect(seen.filter((p) => p.done === p.total)).toHaveLength(1);
    // every event's count is the step it describes (before: done 1 came with no step, its log not read yet)
    for (const p of seen) expect(p.done).toBe(p.step ?? 0);
    // the validation pass before training is said as it starts (tester ET: a minute with no event); the one after
    // the last step is said while it runs, which a pass this short may finish before the event is read
    expect(seen[0]).toMatchObject({ done: 0, detail: 'validation loss before training' });
    for (const p of seen.filter((x) => x.detail?.startsWith('validation loss after'))) expect(p.detail).toMatch(/^validation loss after step 5(: \d+\/1 sequences)?$/);
  } finally {
    m.dispose();
  }
});

test('a validation pass counts the sequences (or images) it has scored, before training and after a step (tester FA)', async () => {
  // enough one-sequence micro-batches that a pass outlasts the 50 ms between two reports
  const s = await syntheticGpt2({ layers: 2, d: 64, heads: 4, ff: 256, vocab: 23, positions: 32, seed: 43 });
  const m = await loadModel(s.dir);
  try {
    const seen: FinetuneProgress[] = [];
    const validation = Array.from({ length: 1500 }, (_, i) => pattern(32, 23).map((x) => (x + i) % 23));
    const r = await finetune(m, { data: pattern(400, 23), steps: 2, batch: 2, seq: 16, micro: 1, validation, evalEvery: 1, onProgress: (p) => seen.push(p) });
    r.model.dispose();
    const counted = seen.filter((p) => /: \d+\/1500 sequences$/.test(p.detail ?? ''));
    const passes = new Set(counted.map((p) => p.detail!.replace(/: .*/, '')));
    // before: the detail named the pass, with no count, for as long as it ran
    expect(passes).toEqual(new Set(['validation loss before training', 'validation loss after step 1', 'validation loss after step 2']));
    for (const p of counted) expect(p).toMatchObject({ phase: 'finetune', total: 2, done: p.step ?? 0 });
    // each pass's count rises
    for (const pass of passes) {
      const n = counted.filter((p) => p.detail!.startsWith(pass)).map((p) => Number(/(\d+)\/1500/.exec(p.detail!)![1]));
      expect(n).toEqual([...n].sort((a, b) => a - b));
    }
  } finally {
    m.dispose();
  }
});

/** A gpt2 checkpoint written as compress writes a window 1-2 merge in the tied format, and its expanded form. */
async function mergedCheckpoint(seed: number) {
  const s = await syntheticGpt2({ layers: 4, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed });
  const base = await loadModel(s.dir);
  const ff = base.ffWeights(1);
  base.dispose();
  const merged = path.join(tempDir('merged'), 'm');
  const replace = new Map([...ffReplacements(s.config, 'decoder', 1, ff), ...ffReplacements(s.config, 'decoder', 2, ff)]);
  const windows = [{ stack: 'decoder', window: '1-2', layers: [1, 2], anchor: 1, method: 'permute', recover: 'none' }];
  await writeCheckpoint({ source: s.dir, out: merged, format: 'tied', replace, ties: ffTies(s.config, 'decoder', [1, 2]), info: { windows } });
  const expanded = path.join(tempDir('expanded'), 'e');
  await convertCheckpoint(merged, expanded, 'expanded');
  return { base: s.dir, merged, expanded };
}

test('the library refuses to train an expanded output apart, as the CLI does; a view that ties its windows trains', async () => {
  const c = await mergedCheckpoint(42);
  const x = await loadModel(c.expanded);
  try {
    // before: trained, saved with the record still calling layers 1-2 merged, and convert --format tied then refused
    await expect(finetune(x, { data: pattern(60, 23), steps: 1, batch: 2, seq: 12 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('an expanded ffmerge output: its merged FFs are separate copies that would train apart') });
    // and saveTrained will not write such a model over the expanded folder either
    const out = path.join(tempDir('x-save'), 'out');
    await expect(saveTrained(x, { source: c.expanded, out })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('an expanded ffmerge output') });
    expect(fs.existsSync(out)).toBe(false);
    // the window tied in native memory (what the finetune recover method does) trains as one FF and saves as equal copies
    const ff = x.ffWeights(1); // one object for both layers: withFF shares it as one native FF
    const tied = await x.withFF([1, 2].map((layer) => ({ stack: 'decoder' as const, layer, ff })));
    try {
      const t = await finetune(tied, { data: pattern(60, 23), steps: 1, batch: 2, seq: 12, lr: 1e-2 });
      try {
        await saveTrained(t.model, { source: c.expanded, out });
      } finally {
        t.model.dispose();
      }
    } finally {
      tied.dispose();
    }
    const back = await loadModel(out);
    try {
      expect(back.ffWeights(2).wIn).toEqual(back.ffWeights(1).wIn);
      expect(back.ffWeights(1).wIn).not.toEqual(x.ffWeights(1).wIn);
    } finally {
      back.dispose();
    }
  } finally {
    x.dispose();
  }
});

test('saveTrained refuses a source that is not the model it saves: another model, or other merges', async () => {
  const c = await mergedCheckpoint(43);
  const other = await syntheticLlama({ layers: 4, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 23, seed: 44 });
  const merged = await loadModel(c.merged);
  const base = await loadModel(c.base);
  const out = path.join(tempDir('wrong-source'), 'out');
  try {
    // before: untied copies with no record of the merge
    await expect(saveTrained(merged, { source: c.base, out })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining("the model's decoder layers 1, 2 share one FF (a merge), but source") });
    // a model with each layer's own FF over a folder that stores layers 1-2 once
    await expect(saveTrained(base, { source: c.merged, out })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('records decoder layers 1, 2 as merged') });
    // before: TENSOR_NOT_FOUND "pos_emb" (or a write) for another architecture's folder
    await expect(saveTrained(merged, { source: other.dir, out })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is not the model being saved \(family "llama" there, "gpt2" in the model;/) });
    expect(fs.existsSync(out)).toBe(false);
  } finally {
    merged.dispose();
    base.dispose();
  }
});

test('non-finite weights fail with NON_FINITE_ACTIVATIONS naming them as a cause, not only the learning rate', async () => {
  const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 38 });
  const m = await loadModel(s.dir);
  const ff = m.ffWeights(0);
  const bad = await m.withFF([{ stack: 'decoder', layer: 0, ff: { ...ff, wOut: ff.wOut.map((v, i) => (i === 3 ? NaN : v)) } }]);
  try {
    await expect(finetune(bad, { data: pattern(40, 19), steps: 1, batch: 2, seq: 12 })).rejects.toMatchObject({
      code: 'NON_FINITE_ACTIVATIONS',
      message: expect.stringContaining('weights or the data hold non-finite values'),
    });
  } finally {
    bad.dispose();
    m.dispose();
  }
});

test('a last update that leaves non-finite weights fails, though no later loss would show it (no validation)', async () => {
  const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 39 });
  const m = await loadModel(s.dir);
  try {
    // before: the weights were Infinity and finetune resolved (ffmerge finetune saved them, exit 0)
    await expect(finetune(m, { data: pattern(40, 19), steps: 1, batch: 2, seq: 12, lr: 1e38, clip: 0 })).rejects.toMatchObject({
      code: 'NON_FINITE_ACTIVATIONS',
      message: expect.stringMatching(/after step 1 the weights of \S+ hold NaN or Inf/),
    });
    // before: weights multiplied by 1 − 1e30·2e-4 each step, finite and useless
    await expect(finetune(m, { data: pattern(40, 19), steps: 1, batch: 2, seq: 12, weightDecay: 1e30 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('lr × weightDecay'),
    });
    const ok = await finetune(m, { data: pattern(40, 19), steps: 1, batch: 2, seq: 12, weightDecay: 0.1 });
    ok.model.dispose();
  } finally {
    m.dispose();
  }
});

test('a last update that leaves finite weights no pass survives fails as diverged, with or without validation (tester AN)', async () => {
  const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 19, seed: 39 });
  const m = await loadModel(s.dir);
  try {
    const run = { data: pattern(40, 19), steps: 1, batch: 2, seq: 12, lr: 1e30 };
    // before: weights near 1e30, finite, and finetune resolved (ffmerge finetune saved them, exit 0; eval then failed)
    await expect(finetune(m, run)).rejects.toMatchObject({
      code: 'NON_FINITE_ACTIVATIONS',
      message: expect.stringContaining('after step 1 the loss on the last training batch is not finite'),
    });
    // before: "the training loss is not finite", though the one training loss was finite
    await expect(finetune(m, { ...run, validation: [pattern(13, 19)] })).rejects.toMatchObject({
      code: 'NON_FINITE_ACTIVATIONS',
      message: expect.stringContaining('after step 1 the validation loss is not finite'),
    });
    // past float32: it was "lr must be a positive number"
    await expect(finetune(m, { ...run, lr: 1e39 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('lr 1e+39 is larger than float32') });
    // below float32: it was refused by the trainer after loading, as "must be a positive number" (tester EM)
    await expect(finetune(m, { ...run, lr: 1e-50 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('lr 1e-50 is smaller than float32') });
    // before: accepted and run as micro = batch, while ffmerge finetune recorded micro 3 (tester AN)
    await expect(finetune(m, { ...run, micro: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('micro 3 (--micro) is larger than batch 2') });
    // the extra pass changes nothing: a sane run gives the same weights with validation as without
    const a = await finetune(m, { ...run, lr: 1e-3 });
    const b = await finetune(m, { ...run, lr: 1e-3, validation: [pattern(13, 19)] });
    expect(a.model.ffWeights(1).wIn).toEqual(b.model.ffWeights(1).wIn);
    a.model.dispose();
    b.model.dispose();
  } finally {
    m.dispose();
  }
});

test('ffmerge finetune on a merged tied checkpoint keeps the tie and the file size', async () => {
  const s = await syntheticGpt2({ layers: 4, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 34 });
  const base = await loadModel(s.dir);
  const ff = base.ffWeights(1);
  base.dispose();
  // what compress writes for a window 1-2 (one stored FF, layer 2 tied to it)
  const merged = path.join(tempDir('merged'), 'm');
  const replace = new Map([...ffReplacements(s.config, 'decoder', 1, ff), ...ffReplacements(s.config, 'decoder', 2, ff)]);
  // the record as compress writes it (convert below reads its windows)
  const windows = [{ stack: 'decoder', window: '1-2', layers: [1, 2], anchor: 1, method: 'permute', recover: 'none' }];
  await writeCheckpoint({ source: s.dir, out: merged, format: 'tied', replace, ties: ffTies(s.config, 'decoder', [1, 2]), info: { windows } });
  // the loader makes the tied window one native FF, and training keeps it
  const loaded = await loadModel(merged);
  const view = loaded;
  try {
    expect(view.sharesFF(1, view, 2)).toBe(true);
    expect(view.sharesFF(0, view, 1)).toBe(false);
    const t = await finetune(view, { data: pattern(60, 23), steps: 2, batch: 2, seq: 12, lr: 1e-3 });
    expect(t.model.sharesFF(1, t.model, 2)).toBe(true);
    expect(t.model.ffWeights(1).wIn).not.toEqual(view.ffWeights(1).wIn);
    t.model.dispose();
  } finally {
    loaded.dispose();
  }
  const data = path.join(tempDir('data'), 'train.jsonl');
  fs.writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ input_ids: Array.from(pattern(16, 23).map((v) => (v + i) % 23)) })).join('\n') + '\n');
  // validation of other text: the training file again is refused (it would score text just trained on)
  const valid = path.join(path.dirname(data), 'valid.jsonl');
  fs.writeFileSync(valid, Array.from({ length: 2 }, (_, i) => JSON.stringify({ input_ids: Array.from(pattern(16, 23).map((v) => (v + i + 10) % 23)) })).join('\n') + '\n');
  const out = path.join(tempDir('ft'), 'out');
  const r = ffmerge(['finetune', merged, '--data', data, '--valid', valid, '--steps', '4', '--batch', '3', '--seq', '12', '--lr', '1e-3', '--out', out, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const res = JSON.parse(r.stdout) as { ok: boolean; bytes: number; lastLoss: number; valBefore: number; valAfter: number };
  expect(res.ok).toBe(true);
  expect(fs.statSync(path.join(out, 'model.safetensors')).size).toBe(fs.statSync(path.join(merged, 'model.safetensors')).size);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { ffmerge: { ties: Record<string, string>; windows: unknown[]; finetune: { steps: number } } };
  expect(Object.keys(config.ffmerge.ties).length).toBeGreaterThan(0);
  expect(config.ffmerge.windows).toEqual(windows);
  expect(config.ffmerge.finetune.steps).toBe(4);
  // speed is in finetune.json and stdout, never in the model's record: identical runs write identical folders
  expect(Object.keys(config.ffmerge.finetune)).not.toEqual(expect.arrayContaining(['tokensPerSecond']));
  expect(Object.keys(config.ffmerge.finetune)).not.toEqual(expect.arrayContaining(['seconds']));
  const log = JSON.parse(fs.readFileSync(path.join(out, 'finetune.json'), 'utf8')) as { tokensPerSecond: number; seconds: number; steps: number };
  expect(log).toMatchObject({ steps: 4, tokensPerSecond: expect.any(Number), seconds: expect.any(Number) });
  expect(res).toMatchObject({ tokensPerSecond: expect.any(Number) });
  // stdout names the data as paths that work where the command ran; the record, which travels, by file name
  expect(res).toMatchObject({ data: path.resolve(data), valid: path.resolve(valid) });
  expect(config.ffmerge.finetune).toMatchObject({ data: 'train.jsonl', valid: 'valid.jsonl' });
  // the expanded form of the same output is refused: its merged FFs are copies that would train apart
  const expanded = path.join(tempDir('expanded'), 'e');
  await convertCheckpoint(merged, expanded, 'expanded');
  const refused = ffmerge(['finetune', expanded, '--data', data, '--steps', '1', '--batch', '1', '--seq', '12', '--out', path.join(tempDir('ft-e'), 'out')]);
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/is an expanded ffmerge output.*convert .* --format tied.*\[INVALID_ARGUMENT\]/);
  const before = await loadModel(merged);
  const after = await loadModel(out);
  try {
    // the stored copy is what both positions load (the loader reads tied names as copies: compare values)
    expect(after.ffWeights(2).wIn).toEqual(after.ffWeights(1).wIn);
    expect(after.ffWeights(1).wIn).not.toEqual(before.ffWeights(1).wIn);
    expect(after.ffWeights(3).wOut).not.toEqual(before.ffWeights(3).wOut);
  } finally {
    before.dispose();
    after.dispose();
  }
});

test('ffmerge finetune scores every validation row: token-id rows of any length are joined and cut at --seq', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 39 });
  const dir = tempDir('valrows');
  const row = (n: number, shift: number) => JSON.stringify({ input_ids: Array.from({ length: n }, (_, i) => (i * 5 + shift) % 23) });
  const data = path.join(dir, 'train.jsonl');
  // a one-token row is part of the stream too (a row scored alone needs two)
  fs.writeFileSync(data, [row(16, 1), row(1, 2), row(16, 3)].join('\n') + '\n');
  // 16 + 10 + 20 + 1 + 1 + 3 = 51 tokens: six whole blocks of 8 (a row of 20 is longer than the model's 16
  // positions), and 3 left over, which are said to be left out
  const valid = path.join(dir, 'valid.jsonl');
  fs.writeFileSync(valid, [row(16, 4), row(10, 5), row(20, 6), row(1, 7), row(1, 8), row(3, 9)].join('\n') + '\n');
  const out = path.join(dir, 'out');
  const r = ffmerge(['finetune', s.dir, '--data', data, '--valid', valid, '--steps', '1', '--batch', '2', '--seq', '8', '--out', out, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  // before: only rows as long as the first were kept (16 of 46 tokens), silently
  const res = JSON.parse(r.stdout) as { validationTokens: number; validationTokensLeftOut: number; valBefore: number };
  expect(res.validationTokens).toBe(48);
  expect(res.validationTokensLeftOut).toBe(3);
  const text = ffmerge(['finetune', s.dir, '--data', data, '--valid', valid, '--steps', '1', '--batch', '2', '--seq', '8', '--out', path.join(dir, 'out2')]);
  expect(text.status).toBe(0);
  expect(text.stdout).toContain('(48 validation tokens in blocks of --seq 8; the last 3, short of a block, not scored)');
  // the --eval-every scores are in the result and its line, not only in finetune.json (tester CC)
  const every = (...more: string[]) => ffmerge(['finetune', s.dir, '--data', data, '--valid', valid, '--steps', '2', '--batch', '2', '--seq', '8', '--eval-every', '1', ...more]);
  const ev = JSON.parse(every('--out', path.join(dir, 'out4'), '--json').stdout) as { evaluations: { step: number; valLoss: number }[]; valAfter: number };
  expect(ev.evaluations.map((e) => e.step)).toEqual([1, 2]);
  expect(ev.evaluations[1]!.valLoss).toBe(ev.valAfter);
  expect(every('--out', path.join(dir, 'out5')).stdout).toContain(`(at steps 1: ${ev.evaluations[0]!.valLoss.toFixed(3)}, 2: ${ev.valAfter.toFixed(3)})`);
  // an evaluation interval past the last step is refused before the data is read
  const late = ffmerge(['finetune', s.dir, '--data', data, '--valid', valid, '--steps', '3', '--eval-every', '10', '--seq', '8', '--out', path.join(dir, 'out3')]);
  expect(late.status).toBe(2);
  expect(late.stderr).toMatch(/no evaluation would run during the run.*\[OPTION_NOT_APPLICABLE\]/);
  expect(Number.isFinite(res.valBefore)).toBe(true);
});

test('a fine-tuned output, its expanded conversion and its ONNX export each get a card of what they hold, not the source\'s', async () => {
  const s = await syntheticGpt2({ layers: 4, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 39 });
  const base = await loadModel(s.dir);
  const ff = base.ffWeights(1);
  base.dispose();
  const merged = path.join(tempDir('card-merged'), 'm');
  const replace = new Map([...ffReplacements(s.config, 'decoder', 1, ff), ...ffReplacements(s.config, 'decoder', 2, ff)]);
  const windows = [{ stack: 'decoder', window: '1-2', layers: [1, 2], anchor: 1, method: 'permute', recover: 'none' }];
  // what compress writes (no report.json needed: a fine-tuned folder has none), with compress's card
  const stale = '# m with merged feed-forward sublayers (ffmerge)\n\nNo gradient training was done.\n\nThis folder is in the **tied** format\n';
  await writeCheckpoint({ source: s.dir, out: merged, format: 'tied', replace, ties: ffTies(s.config, 'decoder', [1, 2]), info: { k: 2, windows }, extraFiles: { 'README.md': stale } });
  const data = path.join(tempDir('card-data'), 'train.jsonl');
  fs.writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ input_ids: Array.from(pattern(16, 23).map((v) => (v + i) % 23)) })).join('\n') + '\n');
  const valid = path.join(tempDir('card-valid'), 'valid.jsonl');
  fs.writeFileSync(valid, Array.from({ length: 2 }, (_, i) => JSON.stringify({ input_ids: Array.from(pattern(16, 23).map((v) => (v + i + 10) % 23)) })).join('\n') + '\n');
  const out = path.join(tempDir('card-ft'), 'tuned');
  const r = ffmerge(['finetune', merged, '--data', data, '--valid', valid, '--steps', '3', '--batch', '2', '--seq', '12', '--lr', '1e-3', '--out', out, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const res = JSON.parse(r.stdout) as { firstLoss: number; lastLoss: number; valBefore: number; valAfter: number };
  // before: the source's card, copied as a side file ("No gradient training was done.")
  const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
  expect(card).not.toMatch(/no gradient training/i);
  expect(card).toMatch(/^---\n[\s\S]*?\n---\n\n# tuned: a gpt2 model with merged feed-forward sublayers, fine-tuned/);
  expect(card).toContain('- layers 1, 2 share one FF (anchor 1, method `permute`, recover `none`)');
  expect(card).toContain('## Fine-tuning');
  expect(card).toContain('- 3 steps after the merge');
  expect(card).toContain('data: `train.jsonl`; validation: `valid.jsonl`');
  expect(card).toContain(`training loss, first step → last: ${res.firstLoss.toFixed(3)} → ${res.lastLoss.toFixed(3)}`);
  expect(card).toContain(`validation loss (mean NLL) before → after: ${res.valBefore.toFixed(3)} → ${res.valAfter.toFixed(3)}`);
  expect(card).toContain('**tied** format');
  expect(card).toContain('AutoModelForCausalLM.from_pretrained("tuned")');
  const record = (JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { ffmerge: { finetune: Record<string, unknown> } }).ffmerge.finetune;
  expect(record).toMatchObject({ steps: 3, data: 'train.jsonl', valid: 'valid.jsonl' });

  // fine-tuned again: the first run's summary is kept beside the new one (before: only the last was left)
  const again = path.join(tempDir('card-ft2'), 'tuned2');
  const r2 = ffmerge(['finetune', out, '--data', data, '--steps', '2', '--batch', '2', '--seq', '12', '--lr', '1e-3', '--out', again, '--json']);
  expect(r2.stderr).toBe('');
  expect(r2.status).toBe(0);
  const rec2 = (JSON.parse(fs.readFileSync(path.join(again, 'config.json'), 'utf8')) as { ffmerge: { finetune: unknown; earlierFinetunes: unknown[]; windows: unknown } }).ffmerge;
  expect(rec2.finetune).toMatchObject({ steps: 2 });
  expect(rec2.earlierFinetunes).toEqual([record]);
  expect(rec2.windows).toEqual(windows);
  const card2 = fs.readFileSync(path.join(again, 'README.md'), 'utf8');
  expect(card2).toContain('- 2 steps in the last of 2 fine-tuning runs (5 steps in all of them), this one after the merge');
  expect(card2).toContain('- the earlier run: 3 steps after the merge of decoder 1-2; its summary is in `config.json` under `ffmerge.earlierFinetunes`');

  // converted: no report.json, still rebuilt, for the format written (before: the tied card came along)
  const expanded = path.join(tempDir('card-x'), 'tuned-x');
  await convertCheckpoint(out, expanded, 'expanded');
  const xcard = fs.readFileSync(path.join(expanded, 'README.md'), 'utf8');
  expect(xcard).toContain('**expanded** format');
  expect(xcard).not.toMatch(/\*\*tied\*\* format|```python/);
  expect(xcard).toContain('## Fine-tuning');
  expect(xcard.slice(xcard.indexOf('## Fine-tuning'), xcard.indexOf('## How to load'))).toBe(card.slice(card.indexOf('## Fine-tuning'), card.indexOf('## How to load')));

  // exported: the ONNX card, and a record that says what the folder holds
  const onnx = path.join(tempDir('card-onnx'), 'tuned-onnx');
  await exportOnnx(out, { out: onnx });
  const ocard = fs.readFileSync(path.join(onnx, 'README.md'), 'utf8');
  expect(ocard).toContain('**ONNX** export');
  expect(ocard).toContain('## Fine-tuning');
  expect(ocard).not.toMatch(/\*\*tied\*\* format|model\.safetensors|no gradient training/i);
  expect((JSON.parse(fs.readFileSync(path.join(onnx, 'config.json'), 'utf8')) as { ffmerge: { format: string } }).ffmerge.format).toBe('onnx');

  // a library saveTrained of a plain model with no summary: its card says it was trained, and how little is known
  const m = await loadModel(s.dir);
  const t = await finetune(m, { data: pattern(40, 23), steps: 1, batch: 2, seq: 12, lr: 1e-3 });
  try {
    const plain = path.join(tempDir('card-plain'), 'p');
    await saveTrained(t.model, { source: s.dir, out: plain });
    const pcard = fs.readFileSync(path.join(plain, 'README.md'), 'utf8');
    expect(pcard).toMatch(/^---\n[\s\S]*?\n---\n\n# p: a gpt2 model fine-tuned \(ffmerge\)/);
    expect(pcard).toContain('no summary of the training was recorded');
    expect(pcard).toContain('loads anywhere the original model loads, as-is');
    // before: inspect called it "already compressed (tied format)"
    expect(formatSummary(await inspectModel(plain))).toMatch(/\nffmerge +fine-tuned by ffmerge, nothing merged\n/);
  } finally {
    t.model.dispose();
    m.dispose();
  }
});

test('ffmerge finetune on a sharded checkpoint succeeds and reports the bytes of all its shards', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 38 });
  const sharded = path.join(tempDir('sharded'), 'm');
  const w = await writeCheckpoint({ source: s.dir, out: sharded, format: 'tied', maxShardSize: 4096 });
  expect(w.files.length).toBeGreaterThan(1);
  expect(fs.existsSync(path.join(sharded, 'model.safetensors'))).toBe(false);
  const data = path.join(tempDir('data'), 'train.jsonl');
  fs.writeFileSync(data, Array.from({ length: 4 }, (_, i) => JSON.stringify({ input_ids: Array.from(pattern(16, 23).map((v) => (v + i) % 23)) })).join('\n') + '\n');
  const out = path.join(tempDir('ft-sharded'), 'out');
  const r = ffmerge(['finetune', sharded, '--data', data, '--steps', '1', '--batch', '2', '--seq', '12', '--out', out, '--json']);
  // before: the output was written, then a stat of <source>/model.safetensors failed with INTERNAL_ERROR, exit 1
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const res = JSON.parse(r.stdout) as { ok: boolean; sourceBytes: number; bytes: number };
  expect(res.ok).toBe(true);
  expect(res.sourceBytes).toBe(w.files.reduce((n, f) => n + fs.statSync(path.join(sharded, f)).size, 0));
  expect(res.bytes).toBeGreaterThan(0);
});

test('saveTrained started before dispose() finishes, as perplexity and finetune do; the model is refused after', async () => {
  const s = await syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 23, seed: 38 });
  const m = await loadModel(s.dir);
  const out = path.join(tempDir('save-dispose'), 'out');
  const saving = saveTrained(m, { source: s.dir, out });
  m.dispose(); // before: the save rejected with "this model was disposed"
  await expect(saving).resolves.toMatchObject({ out: path.resolve(out) });
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
  await expect(saveTrained(m, { source: s.dir, out: `${out}2` })).rejects.toMatchObject({ code: 'INVALID_STATE', message: 'this model was disposed' });
});

test.each([
  ['gpt2 (Conv1D layout, fused q;k;v)', () => syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 36 })],
  ['llama (q/k/v stored apart, GQA, untied head)', () => syntheticLlama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ff: 21, vocab: 23, seed: 37, tied: false })],
])('saveTrained writes a trained %s model that reloads to the same logits; refusals and aborts leave no output', async (_name, make) => {
  const s = await make();
  const m = await loadModel(s.dir);
  const t = await finetune(m, { data: pattern(40, 23), steps: 2, batch: 2, seq: 12, lr: 1e-2 });
  try {
    const out = path.join(tempDir('saved'), 'out');
    // a file's contents may be a function of what was written, as writeCheckpoint's (the type said string only)
    const w = await saveTrained(t.model, { source: s.dir, out, info: { run: 'test' }, extraFiles: { 'notes.txt': 'x\n', 'bytes.txt': ({ bytes }) => `${bytes}\n` } });
    expect(w.out).toBe(path.resolve(out));
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { ffmerge: { run: string } };
    expect(config.ffmerge.run).toBe('test');
    expect(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8')).toBe('x\n');
    expect(fs.readFileSync(path.join(out, 'bytes.txt'), 'utf8')).toBe(`${w.bytes}\n`);
    const back = await loadModel(out);
    try {
      const input = { ids: pattern(12, 23), batch: 1, seq: 12 };
      const [a, b, orig] = await Promise.all([back, t.model, m].map((x) => x.forward(input, { output: 'logits' })));
      expect(a!.logits).toEqual(b!.logits); // float32 source: every weight written exactly
      expect(a!.logits).not.toEqual(orig!.logits);
    } finally {
      back.dispose();
    }
    // an existing output is refused before the weights are read; an aborted save writes nothing
    await expect(saveTrained(t.model, { source: s.dir, out })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
    // extra files only inside the folder, never over the weights or config.json; info never over the record's
    // own keys (before: "../x" was written beside the folder, "model.safetensors" replaced the weights, and
    // info { format: 'expanded' } made a tied folder compress refused)
    const refused = path.join(tempDir('saved'), 'refused');
    for (const [opts, message] of [
      [{ extraFiles: { '../escaped.txt': 'x' } }, /extraFiles name "\.\.\/escaped\.txt" is not a plain file name/],
      [{ extraFiles: { 'sub/x.txt': 'x' } }, /is not a plain file name/],
      [{ extraFiles: { 'model.safetensors': 'x' } }, /extraFiles "model\.safetensors" is a file the writer makes itself/],
      [{ extraFiles: { 'config.json': '{}' } }, /a file the writer makes itself/],
      [{ extraFiles: { 'n.txt': 42 } }, /extraFiles "n\.txt" must be a string \(got 42\)/],
      [{ info: { format: 'expanded', k: 9 } }, /info "format", "k" are keys of the ffmerge record/],
      // a summary the card would contradict, and numbers JSON writes as null (before: all written as given,
      // the card then saying "no summary of the training was recorded" over a recorded steps: 'x')
      [{ info: { finetune: { steps: 'x' } } }, /info\.finetune steps must be a whole number ≥ 0 \(got "x"\)/],
      [{ info: { finetune: { steps: 2, lastLoss: null } } }, /info\.finetune lastLoss must be a finite number/],
      [{ info: { finetune: { steps: 2, schedule: 3 } } }, /info\.finetune schedule must be a string/],
      [{ info: { finetune: 'two steps' } }, /info\.finetune must be an object \(got "two steps"\)/],
      [{ info: { run: NaN } }, /info holds NaN under "run", which JSON cannot hold/],
      [{ info: { finetune: { steps: 2, valBefore: undefined, firstLoss: 'x' } } }, /info\.finetune firstLoss must be a finite number/], // undefined: left out, as JSON leaves it
    ] as const) {
      await expect(saveTrained(t.model, { source: s.dir, out: refused, ...(opts as object) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    }
    expect(fs.readdirSync(path.dirname(refused))).toEqual([]); // no escaped.txt beside the output, no temp folder
    const aborted = path.join(tempDir('saved'), 'aborted');
    await expect(saveTrained(t.model, { source: s.dir, out: aborted, signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(fs.existsSync(aborted)).toBe(false);
  } finally {
    t.model.dispose();
    m.dispose();
  }
});

test("the 'finetune' recover method trains the merged FF (tie kept) and the other layers' FFs", async () => {
  const s = await syntheticGpt2({ layers: 4, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 35 });
  const model = await loadModel(s.dir);
  try {
    const ids = Int32Array.from({ length: 4 * 16 }, (_, i) => (i * 5 + (i >> 2)) % 23);
    const ctx = { model, anchor: 'first', correlations: new Map(), calibration: [{ input: { ids, batch: 4, seq: 16 }, featureRows: 64 }] } as unknown as MergeContext;
    const m: MergedWindow = { stack: 'decoder', window: { start: 1, k: 2 }, anchor: 1, merged: model.ffWeights(1), perms: new Map() };
    const r = await finetuneRecover.recover(ctx, m, {});
    expect(r.merged.wIn).not.toEqual(m.merged.wIn);
    expect([...r.adjusted!.keys()].sort()).toEqual([0, 3]);
  } finally {
    model.dispose();
  }
});

test('training data shorter than one window says how many tokens it has, one in the singular (tester DE: "has 1 tokens")', async () => {
  const s = await syntheticGpt2({ layers: 2, d: 12, heads: 3, ff: 19, vocab: 23, positions: 16, seed: 37 });
  const m = await loadModel(s.dir);
  try {
    for (const [n, words] of [[1, '1 token,'], [5, '5 tokens,']] as const) {
      await expect(finetune(m, { data: pattern(n, 23), steps: 1, batch: 2, seq: 8 })).rejects.toMatchObject({ code: 'INVALID_DATA', message: expect.stringContaining(`the training data has ${words} fewer than one window of seq + 1 = 9`) });
    }
  } finally {
    m.dispose();
  }
});
