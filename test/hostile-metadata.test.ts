/**
 * Metadata at the edges (tester P): a size past 2^53 in config.json is INVALID_CONFIG naming the key (it was a
 * usage error from the native spec check), a shard whose name merely starts with ".." is inside its folder, and
 * every shard of an output must carry the same tie map.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../lib/model/load';
import { inspectModel } from '../lib/model/inspect';

const BUNDLED = path.join(__dirname, '..', 'models', 'llama-stories260k');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-hostile-meta-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function copyModel(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(BUNDLED)) fs.copyFileSync(path.join(BUNDLED, f), path.join(dir, f));
  return dir;
}

test.each([['1e308', 1e308], ['2^63', 9223372036854775807], ['2^53 + 2', 2 ** 53 + 2]])('max_position_embeddings %s is INVALID_CONFIG naming the key', async (label, v) => {
  const dir = copyModel(`pos-${label.replace(/\W/g, '')}`);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: v }));
  const want = { code: 'INVALID_CONFIG', message: expect.stringContaining('"max_position_embeddings" must be a positive integer below 2^53') };
  await expect(loadModel(dir)).rejects.toMatchObject(want);
  await expect(inspectModel(dir)).rejects.toMatchObject(want);
});

test('a key that is missing is said to be missing, not "(got undefined)" (tester ED)', async () => {
  const dir = copyModel('no-layers');
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  delete config.num_hidden_layers;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const want = { code: 'INVALID_CONFIG', message: 'config.json: "num_hidden_layers" is missing; it must be a positive integer below 2^53' };
  await expect(loadModel(dir)).rejects.toMatchObject(want);
  await expect(inspectModel(dir)).rejects.toMatchObject(want);
});

test('a shard named "..x.safetensors" is a file of its folder; "../x.safetensors" is not', async () => {
  const dir = copyModel('dotdot');
  fs.renameSync(path.join(dir, 'model.safetensors'), path.join(dir, '..x.safetensors'));
  const { SafetensorsReader } = await import('../lib/safetensors');
  const r = await SafetensorsReader.open(path.join(dir, '..x.safetensors'));
  const names = r.names();
  await r.close();
  const index = (shard: string) => JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(names.map((n) => [n, shard])) });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), index('..x.safetensors'));
  const m = await loadModel(dir);
  m.dispose();
  fs.copyFileSync(path.join(dir, '..x.safetensors'), path.join(tmp, 'x.safetensors'));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), index('../x.safetensors'));
  await expect(loadModel(dir)).rejects.toMatchObject({ code: 'SAFETENSORS_INVALID_HEADER', message: expect.stringContaining('outside its folder') });
});

// Every shard of a sharded ffmerge output carries the same tie map; only the first shard's used to be read and
// checked, so a shard whose map was edited (or missing) went unnoticed (tester R).
test('a shard whose tie map differs from the first shard\'s, or lacks it, is INVALID_CONFIG', async () => {
  const { compress } = await import('../lib/pipeline/compress');
  const { SafetensorsReader, writeSafetensors } = await import('../lib/safetensors');
  const out = path.join(tmp, 'sharded');
  await compress(BUNDLED, {
    calibration: path.join(BUNDLED, 'calibration.txt'), calibrationTokens: 512, validationTokens: 512, blockSize: 128,
    window: '1-2', method: 'permute', recover: 'none', out, maxShardSize: 100_000,
  });
  const shards = fs.readdirSync(out).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();
  expect(shards.length).toBeGreaterThan(2);
  const control = await loadModel(out);
  control.dispose();
  const rewrite = async (dir: string, shard: string, edit: (m: Record<string, string>) => Record<string, string>) => {
    const file = path.join(dir, shard);
    const r = await SafetensorsReader.open(file);
    const tensors = [];
    for (const name of r.names()) tensors.push({ name, dtype: r.info(name).dtype, shape: r.info(name).shape, data: await r.readF32(name) });
    const metadata = edit({ ...r.metadata });
    await r.close();
    fs.rmSync(file);
    await writeSafetensors(file, tensors, metadata);
  };
  const variant = async (name: string, edit: (m: Record<string, string>) => Record<string, string>) => {
    const dir = path.join(tmp, name);
    fs.cpSync(out, dir, { recursive: true });
    await rewrite(dir, shards[2]!, edit);
    return dir;
  };
  const edited = await variant('edited', (m) => {
    const ties = JSON.parse(m.ffmerge_ties!) as Record<string, string>;
    const [k] = Object.keys(ties);
    return { ...m, ffmerge_ties: JSON.stringify({ ...ties, [k!]: 'model.layers.4.mlp.up_proj.weight' }) };
  });
  const missing = await variant('missing', ({ ffmerge_ties: _, ...m }) => m);
  await expect(loadModel(edited)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining(`shard ${shards[2]} has a tie map that differs from ${shards[0]}'s`) });
  await expect(loadModel(missing)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining(`shard ${shards[2]} has no tie map, unlike ${shards[0]}`) });
  await expect(inspectModel(edited)).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
});
