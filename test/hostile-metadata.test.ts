/**
 * Metadata at the edges (tester P): a size past 2^53 in config.json is INVALID_CONFIG naming the key (it was a
 * usage error from the native spec check), and a shard whose name merely starts with ".." is inside its folder.
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
