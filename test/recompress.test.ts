/**
 * Compressing a model that is itself an ffmerge output (the bundled llama-stories260k, 5 layers, k = 2):
 * the output keeps the earlier merge and lists it with the new one, in either format and through convert;
 * a window that takes in an already merged layer is refused before any work; the search leaves such
 * windows out; what is written loads with exactly the FFs it should hold and scores what compress reported.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress, type CompressOptions, type CompressResult } from '../lib/pipeline/compress';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { CheckpointReader, TIES_METADATA_KEY, readTies } from '../lib/checkpoint/ties';
import { writeSafetensors } from '../lib/safetensors';
import { inspectModel } from '../lib/model/inspect';
import { formatSummary } from '../lib/cli/inspect';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import { saveTrained } from '../lib/train/save';
import { exportOnnx } from '../lib/export/onnx/export';
import { describeShared, sharedPath } from './helpers/shared';
import { validationText } from './helpers/validation-text';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');
// the paper's merge on given windows: deterministic, no search; validation is VALID's first 10240 tokens
const VALID = validationText(TEXT);
const BASE: CompressOptions = { calibration: TEXT, validation: VALID, k: 2, method: 'permute', recover: 'none' };

jest.setTimeout(600_000);

let tmp: string;
const dir = (name: string) => path.join(tmp, name);
const record = (d: string) => (JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')) as { ffmerge: { format: string; windows: { window: string; layers: number[] }[]; ties?: Record<string, string> } }).ffmerge;
const labels = (d: string) => record(d).windows.map((w) => w.window);

/** Every FF tensor of one layer, as plain arrays, for exact comparison. */
function ff(m: Model, layer: number): number[][] {
  const w = m.ffWeights(layer);
  return [w.wIn, w.wOut, w.wGate].map((a) => Array.from(a as Float32Array));
}

/** `ffmerge eval` on the first 10240 tokens of the validation text: what compress validated on. */
function evalPerplexity(model: string): number {
  const r = spawnSync(process.execPath, [BIN, 'eval', model, '--data', VALID, '--tokens', '10240', '--json'], { encoding: 'utf8', env: { ...process.env, FFMERGE_FROM_SOURCE: '1' } });
  expect(r.status).toBe(0);
  return (JSON.parse(r.stdout) as { perplexity: number }).perplexity;
}

let tied01: CompressResult;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-recompress-'));
  tied01 = await compress(BUNDLED, { ...BASE, window: '0-1', format: 'tied', out: dir('t01') });
  await compress(BUNDLED, { ...BASE, window: '0-1', format: 'expanded', out: dir('e01') });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('compressing an ffmerge output again (disjoint windows)', () => {
  let tied: CompressResult;
  beforeAll(async () => {
    tied = await compress(dir('t01'), { ...BASE, window: '2-3', format: 'tied', out: dir('t01-23') });
  });

  it('a tied source: both merges are recorded and tied; each layer holds exactly its FF; eval gives the reported perplexity', async () => {
    expect(labels(dir('t01-23'))).toEqual(['0-1', '2-3']);
    expect(Object.keys(await readTies(dir('t01-23')))).toHaveLength(6);
    expect(tied.earlierWindows?.map((w) => w.window)).toEqual(['0-1']);
    const s = await inspectModel(dir('t01-23'));
    const base = await inspectModel(BUNDLED);
    expect(s.totalParams).toBe(base.totalParams - 2 * s.stacks[0]!.ffParamsPerLayer);
    const src = await loadModel(dir('t01'));
    const out = await loadModel(dir('t01-23'));
    try {
      // layers 0-1: the earlier shared FF, untouched; 2-3: one new FF, unlike either layer's own; 4: as it was
      expect(ff(out, 0)).toEqual(ff(src, 0));
      expect(ff(out, 1)).toEqual(ff(src, 0));
      expect(ff(out, 3)).toEqual(ff(out, 2));
      expect(ff(out, 2)).not.toEqual(ff(src, 2));
      expect(ff(out, 2)).not.toEqual(ff(src, 3));
      expect(ff(out, 4)).toEqual(ff(src, 4));
    } finally {
      src.dispose();
      out.dispose();
    }
    const ppl = evalPerplexity(dir('t01-23'));
    expect(Math.abs(ppl - tied.merged.validation) / ppl).toBeLessThan(1e-9);
    expect(tied.base.validation).toBeCloseTo(tied01.merged.validation, 9);
    expect(fs.readFileSync(path.join(dir('t01-23'), 'README.md'), 'utf8')).toMatch(/kept from the source[^\n]*layers 0, 1/);
  });

  it('an expanded source: the record lists both, convert --format tied re-ties both, and a tied output of it ties both', async () => {
    await compress(dir('e01'), { ...BASE, window: '2-3', format: 'expanded', out: dir('e01-23') });
    expect(labels(dir('e01-23'))).toEqual(['0-1', '2-3']);
    // inspect names both merges and what they save together, though the expanded file stores every copy
    expect(formatSummary(await inspectModel(dir('e01-23')))).toMatch(/windows decoder 0-1, decoder 2-3, the merges remove 66,048 FF params in the tied format/);
    const back = await convertCheckpoint(dir('e01-23'), dir('e01-23-tied'), 'tied');
    const direct = await compress(dir('e01'), { ...BASE, window: '2-3', format: 'tied', out: dir('e01-23t') });
    const stored = (await inspectModel(dir('t01-23'))).totalParams;
    expect(back.storedParams).toBe(stored);
    expect((await inspectModel(dir('e01-23t'))).totalParams).toBe(stored);
    expect(Object.keys(await readTies(dir('e01-23-tied')))).toHaveLength(6);
    // the same merge from equal weights: the same model whichever way it was stored
    expect(direct.merged.validation).toBe(tied.merged.validation);
    // the report counts the tied form: from an expanded source as from the tied one (before: 'before' held the
    // expanded copies, so 'after' claimed 227,008 while the tied file stored 193,984)
    expect(direct.params).toEqual(tied.params);
    expect(direct.bytes).toEqual(tied.bytes);
    expect(direct.params.after).toBe(stored);
    const a = await loadModel(dir('t01-23'));
    const b = await loadModel(dir('e01-23-tied'));
    try {
      for (let l = 0; l < 5; l++) expect(ff(b, l)).toEqual(ff(a, l));
    } finally {
      a.dispose();
      b.dispose();
    }
    // and the round trip of the twice-compressed tied output comes back as small
    await convertCheckpoint(dir('t01-23'), dir('t01-23-exp'), 'expanded');
    expect(labels(dir('t01-23-exp'))).toEqual(['0-1', '2-3']);
    expect((await convertCheckpoint(dir('t01-23-exp'), dir('t01-23-exp-tied'), 'tied')).storedParams).toBe(stored);
  });

  it('saveTrained (what finetune writes) keeps both merges tied and recorded', async () => {
    const m = await loadModel(dir('t01-23'));
    try {
      const r = await saveTrained(m, { source: dir('t01-23'), out: dir('saved') });
      expect(r.storedParams).toBe((await inspectModel(dir('t01-23'))).totalParams);
    } finally {
      m.dispose();
    }
    expect(labels(dir('saved'))).toEqual(['0-1', '2-3']);
    expect(record(dir('saved')).format).toBe('tied');
    expect(Object.keys(await readTies(dir('saved')))).toHaveLength(6);
  });

  it('fine-tuned, compressed, fine-tuned and compressed again: every run\'s summary is kept, oldest first', async () => {
    const save = async (from: string, to: string, run: number) => {
      const m = await loadModel(from);
      try {
        await saveTrained(m, { source: from, out: dir(to), info: { finetune: { run } } });
      } finally {
        m.dispose();
      }
    };
    const rec = (d: string) => (JSON.parse(fs.readFileSync(path.join(dir(d), 'config.json'), 'utf8')) as { ffmerge: Record<string, unknown> }).ffmerge;
    await save(BUNDLED, 'run1', 1);
    await compress(dir('run1'), { ...BASE, window: '0-1', out: dir('run1-c') });
    expect(rec('run1-c')).toMatchObject({ sourceFinetune: { run: 1 } });
    await save(dir('run1-c'), 'run2', 2);
    // before: the first run went on only as sourceFinetune, beside the new finetune, and the card counted one run
    expect(rec('run2')).toMatchObject({ finetune: { run: 2 }, earlierFinetunes: [{ run: 1 }] });
    expect(Object.hasOwn(rec('run2'), 'sourceFinetune')).toBe(false);
    expect(fs.readFileSync(path.join(dir('run2'), 'README.md'), 'utf8')).toContain('trained in the last of 2 fine-tuning runs (not every run recorded its steps)');
    await compress(dir('run2'), { ...BASE, window: '2-3', out: dir('run2-c') });
    // before: the earlier run was dropped here
    expect(rec('run2-c')).toMatchObject({ sourceFinetune: { run: 2 }, sourceEarlierFinetunes: [{ run: 1 }] });
  });

  it('merges and fine-tunes read in the order they were done: each run records the merges before it (tester DJ)', async () => {
    const save = async (from: string, to: string, run: number) => {
      const m = await loadModel(from);
      try {
        await saveTrained(m, { source: from, out: dir(to), info: { finetune: { steps: run } } });
      } finally {
        m.dispose();
      }
    };
    const rec = (d: string) => (JSON.parse(fs.readFileSync(path.join(dir(d), 'config.json'), 'utf8')) as { ffmerge: Record<string, unknown> }).ffmerge;
    const card = (d: string) => fs.readFileSync(path.join(dir(d), 'README.md'), 'utf8');
    // fine-tuned with nothing merged, then merged at 0-1, then fine-tuned again
    await save(BUNDLED, 'o1', 10);
    await compress(dir('o1'), { ...BASE, window: '0-1', out: dir('o1-c') });
    expect(card('o1-c')).toContain('its source had been fine-tuned with ffmerge before any merge');
    await save(dir('o1-c'), 'o2', 5);
    expect(rec('o2')).toMatchObject({ finetune: { steps: 5, mergedBefore: ['decoder 0-1'] }, earlierFinetunes: [{ steps: 10, mergedBefore: [] }] });
    // before: "5 steps in the last of 2 fine-tuning runs (15 steps in all of them) after the merge", the first included
    expect(card('o2')).toContain('- 5 steps in the last of 2 fine-tuning runs (15 steps in all of them), this one after the merge, the ties kept');
    expect(card('o2')).toContain('- the earlier run: 10 steps before any merge; its summary is in `config.json` under `ffmerge.earlierFinetunes`');
    // merged again: the card and inspect tell both runs, and when
    await compress(dir('o2'), { ...BASE, window: '2-3', out: dir('o2-c') });
    expect(card('o2-c')).toContain('its source had been fine-tuned with ffmerge in 2 runs (before any merge; after the merge of decoder 0-1)');
    expect(formatSummary(await inspectModel(dir('o2-c')))).toContain('fine-tuned by ffmerge (2 runs) before its last merge');
    // as ONNX: the source's runs once, as the source's (before: its `finetune` too, a run after this merge)
    await compress(dir('o2'), { ...BASE, window: '2-3', format: 'onnx', out: dir('o2-onnx') });
    const onnx = rec('o2-onnx');
    for (const k of ['finetune', 'earlierFinetunes']) expect(Object.hasOwn(onnx, k)).toBe(false);
    expect(onnx).toMatchObject({ sourceFinetune: { steps: 5 }, sourceEarlierFinetunes: [{ steps: 10 }] });
    // a caller cannot set when its run trained: the writer does
    const m = await loadModel(dir('o1'));
    try {
      await expect(saveTrained(m, { source: dir('o1'), out: dir('o3'), info: { finetune: { mergedBefore: [] } } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('mergedBefore is set by the writer') });
    } finally {
      m.dispose();
    }
  });
});

describe('a recover method that rewrites later layers (refit-res) next to an earlier merge', () => {
  it('stops before the earlier window, so what is written is what was scored', async () => {
    await compress(BUNDLED, { ...BASE, window: '3-4', format: 'tied', out: dir('t34') });
    // refit-res would rewrite layer 3 alone, but 3 shares its FF with 4: written tied, 4 would take it too
    const r = await compress(dir('t34'), { ...BASE, method: 'select', recover: 'refit-res', window: '1-2', format: 'tied', out: dir('t34-12') });
    expect(r.windows[0]!.adjusted).toBeUndefined();
    expect(labels(dir('t34-12'))).toEqual(['3-4', '1-2']);
    const src = await loadModel(dir('t34'));
    const out = await loadModel(dir('t34-12'));
    try {
      expect(ff(out, 0)).toEqual(ff(src, 0));
      expect(ff(out, 2)).toEqual(ff(out, 1));
      expect(ff(out, 3)).toEqual(ff(src, 3));
      expect(ff(out, 4)).toEqual(ff(src, 3));
    } finally {
      src.dispose();
      out.dispose();
    }
    const ppl = evalPerplexity(dir('t34-12'));
    expect(Math.abs(ppl - r.merged.validation) / ppl).toBeLessThan(1e-9);
  });
});

describe('a recover method that rewrites every other layer (finetune) next to an earlier merge', () => {
  it.each(['t01', 'e01'])('trains the earlier window tied and writes it whole, keeping every other rewrite (%s source)', async (src) => {
    // before: the rewrites stopped at the first merged layer (0), so layer 2's training was dropped as well
    const r = await compress(dir(src), { ...BASE, recover: 'finetune', window: '3-4', format: 'tied', out: dir(`${src}-ft34`) });
    expect(r.windows[0]!.adjusted).toEqual([0, 1, 2]);
    expect(labels(dir(`${src}-ft34`))).toEqual(['0-1', '3-4']);
    const before = await loadModel(dir(src));
    const out = await loadModel(dir(`${src}-ft34`));
    try {
      expect(ff(out, 1)).toEqual(ff(out, 0)); // still one FF
      expect(ff(out, 0)).not.toEqual(ff(before, 0)); // and trained
      expect(ff(out, 2)).not.toEqual(ff(before, 2));
      expect(ff(out, 4)).toEqual(ff(out, 3));
    } finally {
      before.dispose();
      out.dispose();
    }
    const ppl = evalPerplexity(dir(`${src}-ft34`));
    expect(Math.abs(ppl - r.merged.validation) / ppl).toBeLessThan(1e-9);
  });
});

describe('ONNX export of an output', () => {
  it("records the latest run only: a vanilla run's ONNX output of a permute output names no anchor; a caller's note keeps the source's run", async () => {
    const rec = (d: string) => (JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')) as { ffmerge: Record<string, unknown> }).ffmerge;
    expect(rec(dir('t01'))).toMatchObject({ method: 'permute', anchor: 'first' });
    // before: the source's anchor 'first' survived beside method 'vanilla' (reviewer AS); the tied format had it right
    await compress(dir('t01'), { ...BASE, method: 'vanilla', window: '2-3', format: 'onnx', out: dir('t01-v23-onnx') });
    const r = rec(dir('t01-v23-onnx'));
    expect(r).toMatchObject({ method: 'vanilla', format: 'onnx' });
    expect(r).not.toHaveProperty('anchor');
    await exportOnnx(dir('t01'), { out: dir('t01-note-onnx'), info: { note: 'x' } });
    expect(rec(dir('t01-note-onnx'))).toMatchObject({ method: 'permute', anchor: 'first', note: 'x' });
  });

  it('shares each merge as one initializer whether the output is tied or expanded (the record and card say so for both)', async () => {
    const tied = await exportOnnx(dir('t01'), { out: dir('t01-onnx') });
    const expanded = await exportOnnx(dir('e01'), { out: dir('e01-onnx') });
    // before: the expanded output's copies were all written (3 more initializers), under a card that said shared
    expect(expanded.weightTensors).toBe(tied.weightTensors);
    expect(expanded.weightBytes).toBe(tied.weightBytes);
    expect(expanded.tensorUses - expanded.weightTensors).toBe(tied.tensorUses - tied.weightTensors);
    expect(fs.readFileSync(path.join(dir('e01-onnx'), 'README.md'), 'utf8')).toContain('one initializer');
  });

  it('an expanded output whose copies drifted (fine-tuned elsewhere) is exported as it is, unshared, and its record says so', async () => {
    fs.cpSync(dir('e01'), dir('e01-drift'), { recursive: true });
    const src = await CheckpointReader.open(dir('e01'));
    try {
      const tensors = [];
      for (const name of src.names()) {
        const info = src.info(name);
        const data = new Uint8Array(await src.readRaw(name));
        if (name === mlp(1, 'up')) new Float32Array(data.buffer, data.byteOffset, 1)[0]! += 0.01;
        tensors.push({ name, dtype: info.dtype, shape: [...info.shape], data });
      }
      await writeSafetensors(path.join(dir('e01-drift'), 'model.safetensors'), tensors);
    } finally {
      await src.close();
    }
    // before this stop it exported untied under a card that said shared; then it was refused (INVALID_DATA)
    const plain = await exportOnnx(BUNDLED, { out: dir('plain-onnx') });
    const r = await exportOnnx(dir('e01-drift'), { out: dir('e01-drift-onnx') });
    expect(r.weightTensors).toBe(plain.weightTensors);
    const rec = (JSON.parse(fs.readFileSync(path.join(dir('e01-drift-onnx'), 'config.json'), 'utf8')) as { ffmerge: Record<string, unknown> }).ffmerge;
    expect(rec.windows).toBeUndefined();
    expect(rec.unshared).toMatch(/exported as they are: model\.layers\.1\.mlp\.up_proj\.weight differs/);
    expect(fs.existsSync(path.join(dir('e01-drift-onnx'), 'report.json'))).toBe(false);
    // not the source's card, which says shared; before: no card at all, as if ffmerge had not written the folder
    const card = fs.readFileSync(path.join(dir('e01-drift-onnx'), 'README.md'), 'utf8');
    expect(card).toMatch(/^---\n[\s\S]*?\n---\n\n# e01-drift-onnx: a llama model from an ffmerge merge, its FF sublayers unshared \(ffmerge\)/);
    expect(card).toContain('- not shared in this folder (each layer keeps its own FF): decoder window 0-1 is not shared');
    expect(card).toContain('No FF sublayer is shared in this one');
    expect(card).not.toMatch(/share one FF|holds one copy|parameters the merges remove/);
  });

  it('a tied output whose record lacks its windows: recovered from the tie map, as convert does', async () => {
    await retie(dir('t01'), dir('t01-nokey'), tieLayers(0, 1));
    const cfg = path.join(dir('t01-nokey'), 'config.json');
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: Record<string, unknown> };
    delete c.ffmerge.windows;
    fs.writeFileSync(cfg, JSON.stringify(c));
    await exportOnnx(dir('t01-nokey'), { out: dir('t01-nokey-onnx') });
    expect(labels(dir('t01-nokey-onnx'))).toEqual(['0-1']);
    expect(fs.readFileSync(path.join(dir('t01-nokey-onnx'), 'README.md'), 'utf8')).toContain('one initializer');
  });
});

describe('a window that takes in an already merged layer', () => {
  it('is refused, INVALID_WINDOW, before any work and with nothing written: overlapping or the same window, tied or expanded', async () => {
    for (const [src, window] of [['t01', '1-2'], ['t01', '0-1'], ['e01', '1-2'], ['e01', '0-1']] as const) {
      await expect(compress(dir(src), { ...BASE, window, out: dir('never') })).rejects.toMatchObject({
        code: 'INVALID_WINDOW',
        message: expect.stringMatching(/already an ffmerge output: layers decoder 0, 1 share their FF[\s\S]*larger k/),
      });
    }
    expect(fs.existsSync(dir('never'))).toBe(false);
  });

  it('is found from the tie map too, when the record does not list the merge', async () => {
    fs.cpSync(dir('t01'), dir('t01-norecord'), { recursive: true });
    const cfg = path.join(dir('t01-norecord'), 'config.json');
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: Record<string, unknown> };
    c.ffmerge.windows = [];
    fs.writeFileSync(cfg, JSON.stringify(c));
    await expect(compress(dir('t01-norecord'), { ...BASE, window: '1-2', out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_WINDOW', message: expect.stringMatching(/tied in the checkpoint/) });
  });

  it('the search leaves such windows out, and says so when none is left', async () => {
    const r = await compress(dir('t01'), { ...BASE, format: 'tied', out: dir('t01-auto') });
    expect(r.candidates.map((c) => c.windows.decoder)).toEqual(['2-3', '3-4']);
    expect(labels(dir('t01-auto'))).toEqual(['0-1', r.windows[0]!.window]);
    await expect(compress(dir('t01'), { ...BASE, k: 4, out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_WINDOW', message: expect.stringMatching(/every window of k = 4.*a smaller k fits the layers not merged yet \(up to --k 3\)$/) });
  });

  it('baselines leave merged layers out too: dropping a shared FF or its layer frees nothing there', async () => {
    const r = await compress(dir('t01'), { ...BASE, window: '2-3', baselines: ['drop-ff', 'drop-layers'] });
    // before: drop-ff picked layer 0 and drop-layers layer 1, both merged, each claiming a full layer's saving
    expect(r.baselines['drop-ff']!.candidates.map((c) => c.windows.decoder)).toEqual(['2', '3', '4']);
    expect(r.baselines['drop-layers']!.candidates.map((c) => c.windows.decoder)).toEqual(['2', '3', '4']);
  });

  it('a malformed record is INVALID_CONFIG naming the entry', async () => {
    fs.cpSync(dir('t01'), dir('t01-bad'), { recursive: true });
    const cfg = path.join(dir('t01-bad'), 'config.json');
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: Record<string, unknown> };
    c.ffmerge.windows = [{ stack: 'decoder', layers: [0, 9] }];
    fs.writeFileSync(cfg, JSON.stringify(c));
    await expect(compress(dir('t01-bad'), { ...BASE, window: '2-3', out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/ffmerge\.windows\[0\]/) });
  });
});

/**
 * A copy of a checkpoint folder with the given tie map: every logical tensor not tied is stored (the bytes it
 * resolves to in the source), the map goes into the safetensors metadata and config.json's `ffmerge.ties`,
 * and config.json's `ffmerge.windows` is replaced by `windows` when given.
 */
async function retie(from: string, to: string, ties: Record<string, string>, windows?: unknown[]): Promise<void> {
  fs.cpSync(from, to, { recursive: true });
  const src = await CheckpointReader.open(from);
  try {
    const tensors = [];
    for (const name of src.names()) {
      if (Object.hasOwn(ties, name)) continue;
      const info = src.info(name);
      tensors.push({ name, dtype: info.dtype, shape: [...info.shape], data: await src.readRaw(name) });
    }
    await writeSafetensors(path.join(to, 'model.safetensors'), tensors, { [TIES_METADATA_KEY]: JSON.stringify(ties) });
  } finally {
    await src.close();
  }
  const cfg = path.join(to, 'config.json');
  const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: Record<string, unknown> };
  c.ffmerge.ties = ties;
  if (windows) c.ffmerge.windows = windows;
  fs.writeFileSync(cfg, JSON.stringify(c));
}

const mlp = (l: number, t: 'up' | 'gate' | 'down') => `model.layers.${l}.mlp.${t}_proj.weight`;
const tieLayers = (to: number, ...from: number[]) =>
  Object.fromEntries(from.flatMap((l) => (['up', 'gate', 'down'] as const).map((t) => [mlp(l, t), mlp(to, t)])));

describe('merges held only in the tie map (an older output whose record left them out)', () => {
  let ff: number;
  let baseParams: number;
  beforeAll(async () => {
    // t01's tie map ties layers 0-1; its record lists nothing
    await retie(dir('t01'), dir('h2'), tieLayers(0, 1), []);
    const base = await inspectModel(BUNDLED);
    ff = base.stacks[0]!.ffParamsPerLayer;
    baseParams = base.totalParams;
  });

  it('compress records them beside the new window, so convert to expanded and back keeps both savings', async () => {
    await compress(dir('h2'), { ...BASE, window: '3-4', format: 'tied', out: dir('h2c') });
    expect(labels(dir('h2c'))).toEqual(['0-1', '3-4']);
    // recorded now: no longer marked as found in the tie map (before, inspect went on calling it unrecorded)
    expect(record(dir('h2c')).windows[0]).toMatchObject({ stack: 'decoder', layers: [0, 1] });
    expect(Object.hasOwn(record(dir('h2c')).windows[0]!, 'recoveredFrom')).toBe(false);
    expect(formatSummary(await inspectModel(dir('h2c')))).not.toMatch(/not in its record/);
    expect((await inspectModel(dir('h2c'))).totalParams).toBe(baseParams - 2 * ff);
    await convertCheckpoint(dir('h2c'), dir('h2c-exp'), 'expanded');
    expect(labels(dir('h2c-exp'))).toEqual(['0-1', '3-4']);
    expect((await convertCheckpoint(dir('h2c-exp'), dir('h2c-exp-tied'), 'tied')).storedParams).toBe(baseParams - 2 * ff);
    // an expanded output of it too
    await compress(dir('h2'), { ...BASE, window: '3-4', format: 'expanded', out: dir('h2e') });
    expect(labels(dir('h2e'))).toEqual(['0-1', '3-4']);
    expect((await convertCheckpoint(dir('h2e'), dir('h2e-tied'), 'tied')).storedParams).toBe(baseParams - 2 * ff);
  });

  it('convert records them in its output: expanded and back to tied keeps the merge', async () => {
    await convertCheckpoint(dir('h2'), dir('h2-exp'), 'expanded');
    expect(labels(dir('h2-exp'))).toEqual(['0-1']);
    expect((await convertCheckpoint(dir('h2-exp'), dir('h2-exp-tied'), 'tied')).storedParams).toBe(baseParams - ff);
    await convertCheckpoint(dir('h2'), dir('h2-tied'), 'tied');
    expect(labels(dir('h2-tied'))).toEqual(['0-1']);
    expect(Object.hasOwn(record(dir('h2-tied')).windows[0]!, 'recoveredFrom')).toBe(false);
    // a record with no windows key at all (before: refused as "not an ffmerge output", though compress took it)
    await retie(dir('t01'), dir('h2-nokey'), tieLayers(0, 1));
    const cfg = path.join(dir('h2-nokey'), 'config.json');
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: Record<string, unknown> };
    delete c.ffmerge.windows;
    fs.writeFileSync(cfg, JSON.stringify(c));
    await convertCheckpoint(dir('h2-nokey'), dir('h2-nokey-exp'), 'expanded');
    expect(labels(dir('h2-nokey-exp'))).toEqual(['0-1']);
    // a plain model is still no ffmerge output
    await expect(convertCheckpoint(BUNDLED, dir('never'), 'expanded')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not an ffmerge output/) });
  });

  it('inspect counts them and says they are not in the record', async () => {
    expect(formatSummary(await inspectModel(dir('h2')))).toMatch(/windows decoder 0-1 \(tied in the checkpoint, not in its record\)[^\n]*the merges remove 33,024 FF params/);
  });

  it('a tie map that ties only some of a layer\'s FF tensors, or that disagrees with the record, is refused, INVALID_CONFIG', async () => {
    // layer 1's up_proj shares layer 0's; its gate and down are its own
    await retie(dir('t01'), dir('partial'), { [mlp(1, 'up')]: mlp(0, 'up') }, []);
    await expect(compress(dir('partial'), { ...BASE, window: '3-4', out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/ties only some of decoder layer 0's FF tensors/) });
    await expect(convertCheckpoint(dir('partial'), dir('never'), 'expanded')).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    expect(formatSummary(await inspectModel(dir('partial')))).toMatch(/cannot read its merges: .*ties only some/);
    // the record says 0-1-2, the tie map only 0-1
    await retie(dir('t01'), dir('disagree'), tieLayers(0, 1), [{ stack: 'decoder', window: '0-2', layers: [0, 1, 2] }]);
    await expect(compress(dir('disagree'), { ...BASE, window: '3-4', out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/record and the checkpoint's tie map disagree/) });
    expect(fs.existsSync(dir('never'))).toBe(false);
  });

  it('a record that lists a window the tied checkpoint does not tie: the error names the disagreement, and inspect does not count it', async () => {
    fs.cpSync(dir('t01'), dir('bogus'), { recursive: true });
    const cfg = path.join(dir('bogus'), 'config.json');
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: { windows: unknown[] } };
    c.ffmerge.windows.push({ stack: 'decoder', window: '2-3', layers: [2, 3] });
    fs.writeFileSync(cfg, JSON.stringify(c));
    // to expanded too: before, convert copied the record, and inspect of the copy counted the unbacked window's saving
    const runs = [
      () => compress(dir('bogus'), { ...BASE, k: 2, out: dir('never') }),
      () => convertCheckpoint(dir('bogus'), dir('never'), 'tied'),
      () => convertCheckpoint(dir('bogus'), dir('never'), 'expanded'),
    ];
    for (const run of runs) {
      const e = (await run().then(() => undefined, (x: unknown) => x)) as Error & { code: string };
      expect(e).toMatchObject({ code: 'INVALID_DATA', message: expect.stringMatching(/record and the checkpoint's tie map disagree: the record lists decoder 2-3/) });
      expect(e.message).not.toMatch(/expanded model changed/);
      expect(fs.existsSync(dir('never'))).toBe(false);
    }
    const text = formatSummary(await inspectModel(dir('bogus')));
    expect(text).toMatch(/windows decoder 0-1, 3 tensors tied[^\n]*the merges remove 33,024 FF params[^\n]*the record also lists decoder 2-3, which the tied checkpoint does not tie/);
  });
});

describe('inspect on a compressed model offers only windows of layers not merged yet', () => {
  it('an ordinary model: k = 2 … L, every stack counted', async () => {
    const s = await inspectModel(BUNDLED);
    expect(s.savings.map((v) => v.k)).toEqual([2, 3, 4, 5]);
    expect(s.stacks[0]!.mergedLayers).toBeUndefined();
    expect(formatSummary(s)).toMatch(/\nmerging k adjacent FF sublayers into one removes:\nk  params removed/);
  });

  it('0-1 merged: k = 2, 3 (layers 2-4), as compress accepts; 0-1 and 2-3 merged: nothing left', async () => {
    const s = await inspectModel(dir('t01'));
    const ffp = s.stacks[0]!.ffParamsPerLayer;
    expect(s.savings.map((v) => [v.k, v.paramsRemoved])).toEqual([[2, ffp], [3, 2 * ffp]]);
    expect(s.stacks[0]).toMatchObject({ mergedLayers: [0, 1], maxK: 3 });
    expect(formatSummary(s)).toMatch(/not merged yet \(free: decoder layers 2, 3, 4, k up to 3\)/);
    const full = await inspectModel(dir('t01-23'));
    expect(full.savings).toEqual([]);
    expect(full.stacks[0]).toMatchObject({ mergedLayers: [0, 1, 2, 3], maxK: 0 });
    expect(formatSummary(full)).toMatch(/free: decoder layer 4, no window left\) into one removes:\nnothing: every window of 2 adjacent layers takes in a merged layer/);
    expect(formatSummary(full)).toMatch(/already compressed \(tied format\), k = 2, method permute, windows decoder 0-1, decoder 2-3,/);
    // merged again with another k and method: each listed, not the last run's as if it were every merge's
    await compress(dir('t01'), { ...BASE, k: 3, window: '2-4', method: 'vanilla', out: dir('t01-v234') });
    expect(formatSummary(await inspectModel(dir('t01-v234')))).toMatch(/already compressed \(tied format\), k = 2, 3, methods permute, vanilla, windows decoder 0-1, decoder 2-4,/);
    // what the table offers, compress takes; one k more, it refuses
    await expect(compress(dir('t01'), { ...BASE, k: 4, out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_WINDOW' });
    await expect(compress(dir('t01-23'), { ...BASE, k: 2, out: dir('never') })).rejects.toMatchObject({ code: 'INVALID_WINDOW' });
  });

  it('an expanded output: fractions of its tied form, as compress reports them', async () => {
    const s = await inspectModel(dir('e01'));
    const t = await inspectModel(dir('t01'));
    expect(s.tiedParams).toBe(t.totalParams);
    expect(t.tiedParams).toBeUndefined();
    const r = await compress(dir('e01'), { ...BASE, window: '3-4', out: dir('e01-34') });
    // before: 12.7% here against compress's 14.5%
    expect(s.savings[0]!.fraction).toBeCloseTo(r.params.fraction, 12);
    expect(formatSummary(s)).toContain(`"of total" is of its tied form, ${t.totalParams.toLocaleString('en-US')} params`);
  });
});

describeShared('fixtures/marian-multi30k-en-de', 'inspect on an encoder–decoder model merged in different places per stack', () => {
  it('marks the k that only --stacks independent can merge (the default takes one window index in both stacks)', async () => {
    const m = dir('marian-split');
    fs.mkdirSync(m);
    const src = sharedPath('fixtures', 'marian-multi30k-en-de');
    fs.symlinkSync(path.join(src, 'model.safetensors'), path.join(m, 'model.safetensors'));
    const cfg = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
    const windows = [{ stack: 'encoder', window: '0-2', layers: [0, 1, 2] }, { stack: 'decoder', window: '3-5', layers: [3, 4, 5] }];
    fs.writeFileSync(path.join(m, 'config.json'), JSON.stringify({ ...cfg, ffmerge: { format: 'expanded', windows } }));
    const s = await inspectModel(m);
    const enc = s.stacks.find((x) => x.name === 'encoder')!.ffParamsPerLayer;
    // no window of 2 or 3 is free at one index in both stacks (encoder 3-5 free, decoder 0-2): each stack alone
    expect(s.savings.map((v) => [v.k, v.paramsRemoved, v.stacks])).toEqual([[2, 2 * enc, 'independent'], [3, 4 * enc, 'independent']]);
    expect(formatSummary(s)).toMatch(/\n2\* [^\n]*only with --stacks independent\n3\* [^\n]*only with --stacks independent\n\* no window of k layers is free at the same place in every stack/);
    // one stack merged (decoder 0-1): a k only the encoder still fits names that stack, which compress takes alone
    fs.writeFileSync(path.join(m, 'config.json'), JSON.stringify({ ...cfg, ffmerge: { format: 'expanded', windows: [{ stack: 'decoder', window: '0-1', layers: [0, 1] }] } }));
    const one = await inspectModel(m);
    expect(one.savings.map((v) => [v.k, v.stacks])).toEqual([[2, undefined], [3, undefined], [4, undefined], [5, 'encoder'], [6, 'encoder']]);
  });
});
