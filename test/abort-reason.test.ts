/**
 * ABORTED carries the caller's reason as its `cause`, wherever the abort lands: before a call, inside a native
 * job, between the pipeline's phases. A server tells its own timeout (AbortSignal.timeout: a TimeoutError)
 * from a client that went away (tester DA: every abort was the same error, with no cause).
 */
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { matmul } from '../lib/native/gemm';
import { loadModel } from '../lib/model/load';
import { finetune } from '../lib/train/finetune';
import type { FfmergeError } from '../lib/errors';

const model = path.join(__dirname, '..', 'models', 'llama-stories260k');

async function rejection(p: Promise<unknown>): Promise<FfmergeError> {
  try {
    await p;
  } catch (e) {
    return e as FfmergeError;
  }
  throw new Error('the call was not aborted');
}

test('an abort before the call, and one inside a running native job, reject ABORTED caused by the reason', async () => {
  const gone = new Error('client gone');
  const before = new AbortController();
  before.abort(gone);
  const a = new Float32Array(4);
  expect(await rejection(matmul(a, a, { m: 2, n: 2, k: 2 }, { signal: before.signal }))).toMatchObject({ code: 'ABORTED', cause: gone });

  const n = 1536;
  const big = new Float32Array(n * n).fill(1);
  const during = new AbortController();
  const p = matmul(big, big, { m: n, n, k: n }, { signal: during.signal, onProgress: () => during.abort(gone) });
  expect(await rejection(p)).toMatchObject({ code: 'ABORTED', cause: gone });
});

test("compress aborted mid-run by AbortSignal.timeout: ABORTED, its cause the signal's TimeoutError", async () => {
  const signal = AbortSignal.timeout(300);
  const e = await rejection(compress(model, { k: 2, method: 'permute', calibration: path.join(model, 'calibration.txt'), calibrationTokens: 6144, signal }));
  expect(e.code).toBe('ABORTED');
  expect((e.cause as Error).name).toBe('TimeoutError');
  expect(e.cause).toBe(signal.reason);
});

test('finetune aborted while it trains: ABORTED caused by the reason (tester DC: the addon\'s own error was the cause)', async () => {
  const m = await loadModel(model);
  try {
    const gone = new Error('client gone');
    const ac = new AbortController();
    const data = Int32Array.from({ length: 4096 }, (_, i) => (i * 7919) % m.spec.vocab);
    const e = await rejection(finetune(m, { data, steps: 200, batch: 4, seq: 64, signal: ac.signal, onProgress: () => ac.abort(gone) }));
    expect(e).toMatchObject({ code: 'ABORTED', cause: gone });
  } finally {
    m.dispose();
  }
});
