import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointReader, readTies } from '../lib/checkpoint/ties';
import { ffReplacements, ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { averageFF } from '../lib/merge/average';
import { ffStacks } from '../lib/model/architectures';
import { matrixToCanonical, type FFWeights } from '../lib/model/ff-weights';
import { describeShared, sharedPath } from './helpers/shared';

describeShared('fixtures/gpt2-sotu', 'checkpoint writer (gpt2-sotu, window 1-3 merged)', () => {
  const src = sharedPath('fixtures', 'gpt2-sotu');
  const config = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  let tmp: string;
  const window = [1, 2, 3];
  let replace: Map<string, Float32Array>;
  let ties: Record<string, string>;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-write-'));
    const r = await CheckpointReader.open(src);
    const stack = ffStacks(config)[0]!;
    const ffs: FFWeights[] = [];
    for (const l of window) {
      const n = stack.ff(l);
      ffs.push({
        d: 128,
        dFF: 512,
        wIn: matrixToCanonical(await r.readF32(n.wIn), 512, 128, 'conv1d'),
        bIn: await r.readF32(n.bIn!),
        wOut: matrixToCanonical(await r.readF32(n.wOut), 128, 512, 'conv1d'),
        bOut: await r.readF32(n.bOut!),
      });
    }
    await r.close();
    const merged = averageFF(ffs);
    replace = new Map();
    for (const l of window) for (const [k, v] of ffReplacements(config, 'decoder', l, merged)) replace.set(k, v);
    ties = ffTies(config, 'decoder', window);
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('writes expanded and tied outputs that hold the same logical tensors', async () => {
    const exp = await writeCheckpoint({ source: src, out: path.join(tmp, 'exp'), format: 'expanded', replace, ties });
    const tied = await writeCheckpoint({ source: src, out: path.join(tmp, 'tied'), format: 'tied', replace, ties });
    const a = await CheckpointReader.open(exp.out);
    const b = await CheckpointReader.open(tied.out);
    const orig = await CheckpointReader.open(src);
    expect(a.names().sort()).toEqual(orig.names().sort());
    expect(b.names().sort()).toEqual(orig.names().sort());
    for (const name of orig.names()) {
      expect(Buffer.from(await b.readRaw(name)).equals(Buffer.from(await a.readRaw(name)))).toBe(true);
    }
    // merged positions really hold the merged weights, unmerged ones the originals
    expect(Array.from(await a.readF32('transformer.h.2.mlp.c_fc.weight'))).toEqual(Array.from(replace.get('transformer.h.2.mlp.c_fc.weight')!));
    expect(Buffer.from(await a.readRaw('transformer.h.5.mlp.c_fc.weight')).equals(Buffer.from(await orig.readRaw('transformer.h.5.mlp.c_fc.weight')))).toBe(true);
    await Promise.all([a.close(), b.close(), orig.close()]);

    // tied stores exactly (k−1) FF parameter sets fewer, and the file is smaller by those bytes
    const ffParams = 128 * 512 + 512 + 512 * 128 + 128;
    expect(exp.storedParams - tied.storedParams).toBe((window.length - 1) * ffParams);
    const sizeA = fs.statSync(path.join(exp.out, 'model.safetensors')).size;
    const sizeB = fs.statSync(path.join(tied.out, 'model.safetensors')).size;
    const headerDelta = sizeA - sizeB - (window.length - 1) * ffParams * 4;
    expect(Math.abs(headerDelta)).toBeLessThan(4096); // only the JSON header differs otherwise

    // tie map in both places; side files copied, fixture reference files not
    expect(await readTies(tied.out)).toEqual(ties);
    const cfg = JSON.parse(fs.readFileSync(path.join(tied.out, 'config.json'), 'utf8'));
    expect(cfg.ffmerge.ties).toEqual(ties);
    expect(cfg.n_layer).toBe(12);
    expect(fs.existsSync(path.join(tied.out, 'tokenizer.json'))).toBe(true);
    expect(fs.existsSync(path.join(tied.out, 'reference.safetensors'))).toBe(false);
  });

  it('re-saving a tied output is bit-exact', async () => {
    const once = path.join(tmp, 'tied');
    const twice = await writeCheckpoint({ source: once, out: path.join(tmp, 'tied2'), format: 'tied' });
    expect(fs.readFileSync(path.join(twice.out, 'model.safetensors')).equals(fs.readFileSync(path.join(once, 'model.safetensors')))).toBe(true);
    expect(fs.readFileSync(path.join(twice.out, 'config.json'), 'utf8')).toBe(fs.readFileSync(path.join(once, 'config.json'), 'utf8'));
  });

  it('refuses a non-empty output, the input itself, and leaves nothing behind', async () => {
    const before = fs.readdirSync(tmp).sort();
    await expect(writeCheckpoint({ source: src, out: path.join(tmp, 'exp'), format: 'expanded' })).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
    await expect(writeCheckpoint({ source: path.join(tmp, 'exp'), out: path.join(tmp, 'exp'), format: 'expanded', overwrite: true })).rejects.toMatchObject({
      code: 'OUTPUT_EXISTS',
    });
    await expect(
      writeCheckpoint({ source: src, out: path.join(tmp, 'bad'), format: 'expanded', replace: new Map([['transformer.h.0.mlp.c_fc.bias', new Float32Array(3)]]) }),
    ).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    expect(fs.readdirSync(tmp).sort()).toEqual(before);
    // overwrite replaces an existing directory atomically
    const again = await writeCheckpoint({ source: src, out: path.join(tmp, 'exp'), format: 'expanded', overwrite: true });
    expect(fs.existsSync(path.join(again.out, 'model.safetensors'))).toBe(true);
    expect(fs.readdirSync(tmp).sort()).toEqual(before);
  });

  it('an aborted write leaves nothing behind', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(writeCheckpoint({ source: src, out: path.join(tmp, 'aborted'), format: 'expanded', signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(fs.existsSync(path.join(tmp, 'aborted'))).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.includes('ffmerge-tmp'))).toEqual([]);
  });
});
