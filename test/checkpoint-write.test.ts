import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertCheckpoint } from '../lib/checkpoint/convert';
import { CheckpointReader, TIES_METADATA_KEY, readTies } from '../lib/checkpoint/ties';
import { ffReplacements, ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { exportOnnx } from '../lib/export/onnx/export';
import { inspectModel } from '../lib/model/inspect';
import { averageFF } from '../lib/merge/average';
import { ffStacks } from '../lib/model/architectures';
import { transpose, type FFWeights } from '../lib/model/ff-weights';
import { SafetensorsReader, writeSafetensors } from '../lib/safetensors';
import { describeShared, sharedPath } from './helpers/shared';
import { removeSyntheticDirs, syntheticLlama, tempDir, type Synthetic } from './helpers/synthetic-model';

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
        wIn: transpose(await r.readF32(n.wIn), 128, 512),
        bIn: await r.readF32(n.bIn!),
        wOut: transpose(await r.readF32(n.wOut), 512, 128),
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

describe('what an output copies from its source folder', () => {
  afterAll(() => removeSyntheticDirs());
  it('tokenizer and config files, never weights of another format or their indexes (tester EW)', async () => {
    const s = await syntheticLlama({ layers: 2, seed: 41 });
    const weights = ['flax_model.msgpack', 'rust_model.ot', '64-8bits.tflite', 'model.gguf', 'model.onnx', 'tf_model.h5', 'pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.ckpt', 'training_args.bin', 'openvino_model.xml', 'model.pdparams', 'model.npy'];
    const kept = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'source.spm', 'generation_config.json', 'special_tokens_map.json'];
    for (const f of [...weights, ...kept]) fs.writeFileSync(path.join(s.dir, f), f === 'generation_config.json' ? '{}' : 'x');
    // config.json as Python writes it: floats with a decimal point, kept so (tester EW: 10000.0 came out 10000)
    const configFile = path.join(s.dir, 'config.json');
    const text = fs.readFileSync(configFile, 'utf8').replace(/\n}\s*$/, ',\n "rope_theta": 10000.0,\n "attention_dropout": 0.0\n}\n');
    fs.writeFileSync(configFile, text);
    const out = path.join(tempDir('side-files'), 'out');
    await writeCheckpoint({ source: s.dir, out, format: 'tied' });
    const written = fs.readFileSync(path.join(out, 'config.json'), 'utf8');
    expect(written.startsWith(text.replace(/\n}\n$/, ''))).toBe(true);
    expect(written).toMatch(/"rope_theta": 10000\.0,\n "attention_dropout": 0\.0,\n "ffmerge": \{\n  "format": "tied"/);
    expect(JSON.parse(written)).toMatchObject({ rope_theta: 10000, ffmerge: { format: 'tied' } });
    const onnx = path.join(tempDir('side-files-onnx'), 'out');
    await exportOnnx(s.dir, { out: onnx });
    expect(fs.readFileSync(path.join(onnx, 'config.json'), 'utf8')).toContain('"rope_theta": 10000.0,\n "attention_dropout": 0.0,\n "ffmerge": {');
    for (const dir of [out, onnx]) {
      const names = fs.readdirSync(dir);
      expect(weights.filter((f) => names.includes(f))).toEqual([]);
      expect(kept.filter((f) => !names.includes(f))).toEqual([]);
    }
  });
});

describe('checkpoints whose tie map the loader would refuse are never written', () => {
  const UP1 = 'model.layers.1.mlp.up_proj.weight';
  let s: Synthetic;
  let tied: string;

  /**
   * A copy of `dir` whose model.safetensors records `ties` as its ffmerge tie map (tensors unchanged), and
   * config.json's ffmerge.ties the same (two copies that disagree are refused before the tie is looked at).
   */
  async function withTies(dir: string, ties: Record<string, string>): Promise<string> {
    const copy = path.join(tempDir('ties'), 'ck');
    fs.cpSync(dir, copy, { recursive: true });
    const r = await SafetensorsReader.open(path.join(dir, 'model.safetensors'));
    const tensors = await Promise.all(r.names().map(async (name) => ({ name, dtype: 'F32' as const, shape: r.info(name).shape, data: await r.readF32(name) })));
    await r.close();
    await writeSafetensors(path.join(copy, 'model.safetensors'), tensors, { format: 'pt', [TIES_METADATA_KEY]: JSON.stringify(ties) });
    const cfg = path.join(copy, 'config.json');
    const c = JSON.parse(fs.readFileSync(cfg, 'utf8')) as { ffmerge: Record<string, unknown> };
    c.ffmerge.ties = ties;
    fs.writeFileSync(cfg, JSON.stringify(c));
    return copy;
  }

  beforeAll(async () => {
    s = await syntheticLlama({ layers: 2, d: 24, ff: 34, seed: 3 });
    tied = path.join(tempDir('tied'), 'ck');
    await writeCheckpoint({ source: s.dir, out: tied, format: 'tied', ties: ffTies(s.config, 'decoder', [0, 1]), info: { windows: [{ stack: 'decoder', layers: [0, 1] }] } });
  });
  afterAll(() => removeSyntheticDirs());

  it('a sane tied output converts (the control)', async () => {
    const out = path.join(tempDir('conv'), 'out');
    await convertCheckpoint(tied, out, 'expanded');
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
  });

  it('convert rebuilds the card for the format it writes, with no report.json or an unreadable one', async () => {
    const src = path.join(tempDir('card'), 'src');
    fs.cpSync(tied, src, { recursive: true });
    // the card a tied output carries; before: convert copied it unless report.json was there
    fs.writeFileSync(path.join(src, 'README.md'), '# x\n\nThis folder is in the **tied** format: … absent from `model.safetensors`.\n');
    const out = path.join(tempDir('card'), 'expanded');
    await convertCheckpoint(src, out, 'expanded');
    const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(card).toMatch(/^---\n[\s\S]*?\n---\n\n# expanded: a llama model with merged feed-forward sublayers \(ffmerge\)/);
    expect(card).toContain('- layers 0, 1 share one FF');
    expect(card).toContain('**expanded** format');
    expect(card).not.toMatch(/\*\*tied\*\* format|## Fine-tuning/);
    // a report.json edited into something else: before, a SyntaxError (no code) and no output; now the record's card
    fs.writeFileSync(path.join(src, 'report.json'), '{"model": ');
    const back = path.join(tempDir('card'), 'tied-again');
    await convertCheckpoint(src, back, 'tied');
    expect(fs.readFileSync(path.join(back, 'README.md'), 'utf8')).toContain('**tied** format');
    expect(fs.existsSync(path.join(back, 'report.json'))).toBe(false);
  });

  it('an emptied tie map (layer 1 FF missing): convert and the writer refuse, TENSOR_NOT_FOUND, nothing written', async () => {
    // Before: convert wrote an expanded checkpoint without layer 1's FF, exit 0; eval then refused it.
    const bad = await withTies(tied, {});
    const out = path.join(tempDir('conv'), 'out');
    await expect(convertCheckpoint(bad, out, 'expanded')).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND', message: expect.stringContaining(UP1) });
    await expect(convertCheckpoint(bad, out, 'tied')).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND' });
    await expect(writeCheckpoint({ source: bad, out, format: 'tied' })).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('a tie to a tensor of another shape: SHAPE_MISMATCH naming both, nothing written', async () => {
    // Before: convert copied q_proj [24, 24] into up_proj's place (the config says [34, 24]), exit 0.
    const ties = { ...(await readTies(tied)), [UP1]: 'model.layers.0.self_attn.q_proj.weight' };
    const bad = await withTies(tied, ties);
    const out = path.join(tempDir('conv'), 'out');
    await expect(convertCheckpoint(bad, out, 'expanded')).rejects.toMatchObject({
      code: 'SHAPE_MISMATCH',
      message: expect.stringMatching(/model\.layers\.1\.mlp\.up_proj\.weight.*tied to "model\.layers\.0\.self_attn\.q_proj\.weight"/),
    });
    await expect(writeCheckpoint({ source: bad, out, format: 'expanded' })).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('a tie a caller adds of some of a layer\'s FF tensors is refused, before anything is written', async () => {
    // Before: written, and the output then refused by ffmerge's own readers ("ties only some of ... FF tensors")
    const out = path.join(tempDir('conv'), 'out');
    const down = (l: number) => `model.layers.${l}.mlp.down_proj.weight`;
    for (const format of ['tied', 'expanded'] as const) {
      await expect(writeCheckpoint({ source: s.dir, out, format, ties: { [down(1)]: down(0) } })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringContaining("the tie map given ties only some of decoder layer 0's FF tensors"),
      });
    }
    await expect(exportOnnx(s.dir, { out, ties: { [down(1)]: down(0) } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(fs.existsSync(out)).toBe(false);
    // a chain (here a loop) is named as one: a layer of it read as "tied to a tensor no other layer shares"
    const chain = { ...ffTies(s.config, 'decoder', [1, 0]), ...ffTies(s.config, 'decoder', [0, 1]) };
    await expect(writeCheckpoint({ source: s.dir, out, format: 'tied', ties: chain })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('is itself tied') });
    await expect(exportOnnx(s.dir, { out, ties: chain })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('is itself tied') });
    // the record's keys the writer sets itself are not taken from info (a tie map the weights lack, the other format)
    for (const [info, hint] of [[{ ties: { [down(1)]: down(0) } }, true], [{ format: 'expanded' }, false]] as const) {
      const e = (await writeCheckpoint({ source: s.dir, out, format: 'tied', info }).catch((x: unknown) => x)) as Error & { code: string };
      expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('set by the writer') });
      expect(e.message.includes('give ties as the ties option')).toBe(hint);
    }
    await expect(exportOnnx(s.dir, { out, info: { onnx: {} } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(writeCheckpoint({ source: s.dir, out, format: 'tied', info: 'windows' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(fs.existsSync(out)).toBe(false);
    // whole FFs, as a merge ties them, are written
    await writeCheckpoint({ source: s.dir, out, format: 'tied', ties: ffTies(s.config, 'decoder', [0, 1]) });
    expect((await inspectModel(out)).ffParams).toBeLessThan((await inspectModel(s.dir)).ffParams);
  });

  it('the windows info records must agree with the ties written, or the writer refuses before anything is written', async () => {
    // Before: written, and the output then refused by convert, export and compress (record and tie map disagree)
    const m = await syntheticLlama({ layers: 3, d: 24, ff: 34, seed: 5 });
    const out = path.join(tempDir('conv'), 'out');
    const ties01 = ffTies(m.config, 'decoder', [0, 1]);
    const windows = (stack: string, layers: number[]) => ({ windows: [{ stack, layers }] });
    for (const [ties, info, why] of [
      [ties01, windows('decoder', [1, 2]), 'info.windows lists decoder 1+2'], // overlaps the tied window
      [{}, windows('decoder', [0, 1]), 'info.windows lists decoder 0+1'], // tied output that does not tie it
      [ties01, windows('encoder', [0, 1]), 'names no stack of this model'],
      [ties01, { windows: 'decoder 0-1' }, 'ffmerge.windows must be a list'],
    ] as const) {
      await expect(writeCheckpoint({ source: m.dir, out, format: 'tied', ties, info })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(why) });
    }
    expect(fs.existsSync(out)).toBe(false);
    // record and ties agree: written, and convert reads it back
    await writeCheckpoint({ source: m.dir, out, format: 'tied', ties: ties01, info: windows('decoder', [1, 0]) });
    const back = path.join(tempDir('conv'), 'back');
    await convertCheckpoint(out, back, 'expanded');
    expect(JSON.parse(fs.readFileSync(path.join(back, 'config.json'), 'utf8')).ffmerge.windows).toEqual([{ stack: 'decoder', layers: [1, 0] }]);
  });

  it('a tie a caller adds between tensors of different shapes is refused', async () => {
    // Before: the expanded writer stored q_proj's [24, 24] bytes under up_proj's name.
    const out = path.join(tempDir('conv'), 'out');
    await expect(writeCheckpoint({ source: s.dir, out, format: 'expanded', ties: { [UP1]: 'model.layers.0.self_attn.q_proj.weight' } })).rejects.toMatchObject({
      code: 'SHAPE_MISMATCH',
      message: expect.stringContaining('[34, 24]'),
    });
    expect(fs.existsSync(out)).toBe(false);
  });
});

test('convert --format expanded of a tied output writes the bytes compress --format expanded writes (tester FB)', async () => {
  // before: the tied copies went last, in reverse, and the hashes of the two routes differed
  const { compress } = await import('../lib/pipeline/compress');
  const bundled = path.join(__dirname, '..', 'models', 'llama-stories260k');
  const base = { calibration: path.join(bundled, 'calibration.txt'), calibrationTokens: 512, validationTokens: 512, window: '1-2', method: 'permute', recover: 'none' } as const;
  const dir = tempDir('routes');
  await compress(bundled, { ...base, format: 'expanded', out: path.join(dir, 'expanded') });
  await compress(bundled, { ...base, out: path.join(dir, 'tied') });
  await convertCheckpoint(path.join(dir, 'tied'), path.join(dir, 'converted'), 'expanded');
  const bytes = (d: string) => fs.readFileSync(path.join(dir, d, 'model.safetensors'));
  expect(bytes('converted').equals(bytes('expanded'))).toBe(true);
}, 60_000);
