/**
 * A model of fewer positions than the default block size (256): text is cut into blocks of its positions, and
 * the run says so. Before, eval and compress cut to 8 tokens without a word (tester EC).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';

const BUNDLED = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
const TEXT = path.join(BUNDLED, 'calibration.txt');
const BIN = path.resolve(__dirname, '..', 'bin', 'ffmerge.js');

let tmp: string;
let model: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-short-'));
  model = path.join(tmp, 'llama-64');
  fs.cpSync(BUNDLED, model, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 64 }));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('eval says its blocks are the model\'s 64 positions; with --block-size given, nothing more', () => {
  const run = (...extra: string[]) => spawnSync(process.execPath, [BIN, 'eval', model, '--data', TEXT, '--tokens', '1024', ...extra], { encoding: 'utf8', env: { ...process.env, FFMERGE_PROGRESS: '0' } });
  const plain = run();
  expect(plain.status).toBe(0);
  expect(plain.stdout).toMatch(/tokens of .*calibration\.txt, in blocks of 64 \(the model's positions\), 1,008 of them predicted/);
  const given = run('--block-size', '64');
  expect(given.stdout).not.toMatch(/in blocks of/);
});

test("compress's notes say the text was cut at the model's positions", async () => {
  const r = await compress(model, { calibration: TEXT, calibrationTokens: 1024, validationTokens: 1024, window: '1-2', method: 'permute', recover: 'none' });
  expect(r.data.notes).toContain("text is cut into blocks of 64 tokens, the model's positions (the default block size, 256, is longer)");
  const given = await compress(model, { calibration: TEXT, calibrationTokens: 1024, validationTokens: 1024, window: '1-2', method: 'permute', recover: 'none', blockSize: 64 });
  expect(given.data.notes.filter((n) => n.startsWith('text is cut'))).toEqual([]);
});
