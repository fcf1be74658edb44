/**
 * A tied output edited by hand (the tester's repro folders, rebuilt small): its ffmerge record, its tie map
 * and its weights' dtypes are checked the same way by every command (the load plan, model/plan.ts, and the
 * record check the commands that carry a record share, checkpoint/earlier-merges.ts), before any work.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { TIES_METADATA_KEY } from '../lib/checkpoint/ties';
import { ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { exportOnnx } from '../lib/export/onnx/export';
import { loadModel } from '../lib/model/load';
import { inspectModel } from '../lib/model/inspect';
import { runFinetune, type FinetuneCliOptions } from '../lib/cli/finetune';
import { exitCodeFor } from '../lib/cli/errors';
import { saveTrained } from '../lib/train/save';
import { buildSafetensors } from './helpers/safetensors-bytes';
import { removeSyntheticDirs, syntheticLlama, tempDir, type Synthetic } from './helpers/synthetic-model';

const mlp = (l: number, t: 'up' | 'gate' | 'down') => `model.layers.${l}.mlp.${t}_proj.weight`;

type Header = Record<string, unknown> & { __metadata__?: Record<string, string> };

/** A copy of `from` with its safetensors header and/or config.json edited (tensor bytes unchanged). */
function variant(from: string, edit: { header?: (h: Header) => void; config?: (c: Record<string, unknown>) => void; extra?: Uint8Array }): string {
  const to = path.join(tempDir('rec'), 'ck');
  fs.cpSync(from, to, { recursive: true });
  const file = path.join(to, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Header;
  let data = new Uint8Array(bytes.subarray(8 + n));
  if (edit.extra) {
    const grown = new Uint8Array(data.length + edit.extra.length);
    grown.set(data);
    grown.set(edit.extra, data.length);
    data = grown;
  }
  edit.header?.(header);
  fs.writeFileSync(file, buildSafetensors(header, data));
  const cfg = path.join(to, 'config.json');
  const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as Record<string, unknown>;
  edit.config?.(c);
  fs.writeFileSync(cfg, JSON.stringify(c));
  return to;
}

const record = (c: Record<string, unknown>) => c.ffmerge as Record<string, unknown>;
const metaTies = (h: Header) => JSON.parse(h.__metadata__![TIES_METADATA_KEY]!) as Record<string, string>;
const setMetaTies = (h: Header, t: Record<string, string>) => (h.__metadata__![TIES_METADATA_KEY] = JSON.stringify(t));

const finetuneOpts = (out: string): FinetuneCliOptions => ({
  data: 'unused.txt', steps: '1', lr: '1e-3', batch: '1', schedule: 'constant', weightDecay: '0', clip: '1', seed: '0', trainable: 'all', out,
});

/** Every command's way in, each expected to refuse with `code` and a message matching `message`, writing nothing. */
async function everyCommandRefuses(dir: string, code: string, message: RegExp): Promise<void> {
  const out = path.join(tempDir('rec-out'), 'out');
  const want = { code, message: expect.stringMatching(message) };
  await expect(loadModel(dir)).rejects.toMatchObject(want); // eval, compress, finetune load through it
  await expect(inspectModel(dir)).rejects.toMatchObject(want);
  await expect(convertCheckpoint(dir, out, 'expanded')).rejects.toMatchObject(want);
  await expect(convertCheckpoint(dir, out, 'tied')).rejects.toMatchObject(want);
  await expect(exportOnnx(dir, { out })).rejects.toMatchObject(want);
  await expect(writeCheckpoint({ source: dir, out, format: 'expanded' })).rejects.toMatchObject(want);
  const e = await runFinetune(dir, finetuneOpts(out), new AbortController().signal).catch((x: unknown) => x);
  expect(e).toMatchObject(want);
  expect(exitCodeFor(e)).toBe(3);
  expect(fs.existsSync(out)).toBe(false);
}

let s: Synthetic;
let tied: string;

beforeAll(async () => {
  s = await syntheticLlama({ layers: 4, d: 24, ff: 34, seed: 5 });
  tied = path.join(tempDir('rec-tied'), 'ck');
  await writeCheckpoint({ source: s.dir, out: tied, format: 'tied', ties: ffTies(s.config, 'decoder', [1, 2]), info: { windows: [{ stack: 'decoder', layers: [1, 2] }] } });
});
afterAll(() => removeSyntheticDirs());

test('the unedited tied output passes every check (the control)', async () => {
  const m = await loadModel(tied);
  m.dispose();
  const out = path.join(tempDir('rec-out'), 'out');
  await convertCheckpoint(tied, out, 'expanded');
  expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
});

describe('a weight stored as an integer type', () => {
  test('is refused by every command, naming the tensor and its dtype (before: read as whole numbers and used)', async () => {
    const dir = variant(tied, { header: (h) => ((h[mlp(3, 'down')] as { dtype: string }).dtype = 'I32') });
    await everyCommandRefuses(dir, 'SAFETENSORS_UNKNOWN_DTYPE', /"model\.layers\.3\.mlp\.down_proj\.weight" is stored as I32, which is not a floating-point type/);
  });

  test('an integer tensor the model does not use (a buffer) is still fine', async () => {
    const extra = new Uint8Array(new BigInt64Array([0n, 1n, 2n]).buffer);
    const dir = variant(tied, {
      extra,
      header: (h) => {
        const end = Math.max(...Object.entries(h).filter(([k]) => k !== '__metadata__').map(([, v]) => (v as { data_offsets: number[] }).data_offsets[1]!));
        h['model.position_ids'] = { dtype: 'I64', shape: [3], data_offsets: [end, end + 24] };
      },
    });
    const m = await loadModel(dir);
    m.dispose();
  });
});

describe('config.json ffmerge record', () => {
  test.each([
    ['a string', (c: Record<string, unknown>) => (c.ffmerge = 'yes'), /ffmerge record must be an object \(got "yes"\)/],
    ['null', (c: Record<string, unknown>) => (c.ffmerge = null), /ffmerge record must be an object \(got null\)/],
  ])('that is %s is refused by every command as export refused it (before: finetune spread it into its output)', async (_what, edit, message) => {
    await everyCommandRefuses(variant(tied, { config: edit }), 'INVALID_CONFIG', message);
  });

  test('a window listed twice is refused by convert, export and finetune; inspect reports it (tester P: 60,000 copies took compress 20 s)', async () => {
    const dup = variant(tied, { config: (c) => { const w = record(c).windows as unknown[]; w.push({ ...(w[0] as object) }); } });
    const text = /ffmerge\.windows\[1\] takes in decoder layer \d+, which ffmerge\.windows\[0\] already merged/;
    const want = { code: 'INVALID_CONFIG', message: expect.stringMatching(text) };
    const out = path.join(tempDir('rec-out'), 'out');
    await expect(convertCheckpoint(dup, out, 'expanded')).rejects.toMatchObject(want);
    await expect(runFinetune(dup, finetuneOpts(out), new AbortController().signal)).rejects.toMatchObject(want);
    await expect(exportOnnx(dup, { out })).rejects.toMatchObject(want);
    // inspect, where one looks at a record, says so rather than failing
    expect((await inspectModel(dup)).merges?.problem).toMatch(text);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('finetune refuses windows and ties that convert and export refuse, before loading (and saveTrained too)', async () => {
    const winBad = variant(tied, { config: (c) => ((record(c).windows as { layers: number[] }[])[0]!.layers = [1, 7]) });
    const otherTie = variant(tied, {
      header: (h) => setMetaTies(h, { ...metaTies(h), [mlp(2, 'up')]: mlp(0, 'gate') }),
      config: (c) => (record(c).ties = { ...(record(c).ties as object), [mlp(2, 'up')]: mlp(0, 'gate') }),
    });
    const m = await loadModel(tied);
    try {
      for (const [dir, message] of [
        [winBad, /ffmerge\.windows\[0\] must list at least two distinct layers/],
        [otherTie, /ties only some of decoder layer 0's FF tensors/],
      ] as const) {
        const out = path.join(tempDir('rec-out'), 'out');
        await expect(convertCheckpoint(dir, out, 'expanded')).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(message) });
        await expect(runFinetune(dir, finetuneOpts(out), new AbortController().signal)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(message) });
        // the library's way: a model trained elsewhere, saved with this folder as its source
        await expect(saveTrained(m, { source: dir, out })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(message) });
        expect(fs.existsSync(out)).toBe(false);
      }
      // a string record, through saveTrained (before: spread into {"0":"y","1":"e","2":"s"})
      const str = variant(tied, { config: (c) => (c.ffmerge = 'yes') });
      const out = path.join(tempDir('rec-out'), 'out');
      await expect(saveTrained(m, { source: str, out })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    } finally {
      m.dispose();
    }
  });

  test('a tied checkpoint whose record says "expanded": INVALID_CONFIG saying the record and the file disagree (before: finetune INVALID_ARGUMENT "is an expanded output")', async () => {
    const dir = variant(tied, { config: (c) => (record(c).format = 'expanded') });
    const out = path.join(tempDir('rec-out'), 'out');
    const want = { code: 'INVALID_CONFIG', message: expect.stringMatching(/record and the checkpoint disagree: the record says format "expanded".*ties 6 tensors/) };
    const e = await runFinetune(dir, finetuneOpts(out), new AbortController().signal).catch((x: unknown) => x);
    expect(e).toMatchObject(want);
    expect(exitCodeFor(e)).toBe(3);
    await expect(convertCheckpoint(dir, out, 'expanded')).rejects.toMatchObject(want);
    await expect(exportOnnx(dir, { out })).rejects.toMatchObject(want);
  });
});

test('a record whose format is neither tied nor expanded is INVALID_CONFIG (before: taken as it was)', async () => {
  const dir = variant(tied, { config: (c) => (record(c).format = 'zip') });
  const out = path.join(tempDir('rec-out'), 'out');
  const want = { code: 'INVALID_CONFIG', message: expect.stringContaining('ffmerge record has format "zip"') };
  await expect(convertCheckpoint(dir, out, 'expanded')).rejects.toMatchObject(want);
  await expect(exportOnnx(dir, { out })).rejects.toMatchObject(want);
  expect(fs.existsSync(out)).toBe(false);
});

describe('the tie map', () => {
  test('a tie naming a tensor the model does not have is refused, naming the entry (before: convert wrote it as a tensor)', async () => {
    const extra = 'model.layers.9.mlp.up_proj.weight';
    const dir = variant(tied, {
      header: (h) => setMetaTies(h, { ...metaTies(h), [extra]: mlp(1, 'up') }),
      config: (c) => (record(c).ties = { ...(record(c).ties as object), [extra]: mlp(1, 'up') }),
    });
    await everyCommandRefuses(dir, 'INVALID_CONFIG', /tie map ties "model\.layers\.9\.mlp\.up_proj\.weight" to "model\.layers\.1\.mlp\.up_proj\.weight", but the model has no tensor/);
  });

  test('config.json ffmerge.ties that differs from the metadata map is refused, naming the entry (before: ignored)', async () => {
    const dir = variant(tied, { config: (c) => (record(c).ties = { ...(record(c).ties as object), [mlp(2, 'down')]: mlp(0, 'down') }) });
    await everyCommandRefuses(dir, 'INVALID_CONFIG', /ffmerge\.ties and the checkpoint's tie map .* disagree: the config ties "model\.layers\.2\.mlp\.down_proj\.weight" to "model\.layers\.0\.mlp\.down_proj\.weight", the checkpoint to "model\.layers\.1\.mlp\.down_proj\.weight"/);
    // an entry only the metadata has
    const fewer = variant(tied, {
      config: (c) => {
        const t = { ...(record(c).ties as Record<string, string>) };
        delete t[mlp(2, 'gate')];
        record(c).ties = t;
      },
    });
    await expect(loadModel(fewer)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/the checkpoint ties "model\.layers\.2\.mlp\.gate_proj\.weight".*does not list it|does not list "model\.layers\.2\.mlp\.gate_proj\.weight"/) });
  });

  test('metadata that lost its tie map while config.json still ties: said so, not "missing tensor" (before: TENSOR_NOT_FOUND)', async () => {
    const dir = variant(tied, { header: (h) => delete h.__metadata__![TIES_METADATA_KEY] });
    await everyCommandRefuses(dir, 'INVALID_CONFIG', /config\.json's ffmerge record ties 6 tensors to others .* safetensors metadata has no tie map \(ffmerge_ties\)/);
  });
});
