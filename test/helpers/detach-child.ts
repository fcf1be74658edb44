/**
 * Run in a child process by test/native-jobs-reliability.test.ts (a crash must fail the test, not jest): starts one
 * native job, transfers one of its input buffers away while the job runs (structuredClone with `transfer`,
 * then drops the clone, collects and allocates garbage over the freed memory), and checks the job's result
 * against the same job run on an untouched copy. Prints one JSON line {scenario, ok, detail} per scenario; exit 0 unless it crashed.
 *
 *   node --expose-gc -r ts-node/register/transpile-only test/helpers/detach-child.ts <scenario>...
 */
import * as path from 'node:path';
import { matmul } from '../../lib/native/gemm';
import { CorrelationAccumulator } from '../../lib/native/correlation';
import { linearSumAssignment } from '../../lib/native/assignment';
import { loadModel } from '../../lib/model/load';

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 4294967296 - 0.5;
  }
  return out;
}

/**
 * Moves the buffer's memory to a clone that is dropped at once, then, while the job runs, collects garbage
 * (the freed backing store is released, possibly unmapped) and allocates buffers of the same size full of
 * 1e30 (which reuse it), so a worker still reading the old memory crashes or computes garbage.
 */
async function detach(buf: ArrayBufferLike): Promise<void> {
  const size = buf.byteLength;
  structuredClone(buf, { transfer: [buf as ArrayBuffer] });
  const g = (globalThis as { gc?: () => void }).gc;
  const junk: Float32Array[] = [];
  for (let round = 0; round < 6; round++) {
    g?.();
    await new Promise((r) => setTimeout(r, 5));
    junk.push(new Float32Array(Math.max(1, size / 4)).fill(1e30));
    if (junk.length > 3) junk.shift();
  }
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function run(scenario: string): Promise<{ ok: boolean; detail: string }> {
  switch (scenario) {
    case 'matmul-input': {
      const n = 2048;
      const a = rand(n * n, 1);
      const b = rand(n * n, 2);
      const want = await matmul(a.slice(), b.slice(), { m: n, n, k: n });
      const p = matmul(a, b, { m: n, n, k: n });
      await Promise.all([detach(b.buffer), detach(a.buffer)]);
      const got = await p;
      return { ok: same(got, want), detail: `b.length after detach ${b.length}` };
    }
    case 'matmul-out': {
      const n = 1024;
      const out = new Float32Array(n * n);
      const p = matmul(rand(n * n, 1), rand(n * n, 2), { m: n, n, k: n }, { out });
      const settled = p.then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      await detach(out.buffer);
      const err = await settled;
      return { ok: err?.code === 'BUFFER_DETACHED', detail: err ? `rejected with ${err.code}` : 'resolved although its output was detached' };
    }
    case 'correlation': {
      const d = 512;
      const rows = 8192;
      const x = rand(rows * d, 3);
      const y = rand(rows * d, 4);
      const ref = new CorrelationAccumulator([d, d], [[0, 1]]);
      await ref.add([x.slice(), y.slice()], rows);
      const want = await ref.finalize(0);
      const acc = new CorrelationAccumulator([d, d], [[0, 1]]);
      const p = acc.add([x, y], rows);
      await Promise.all([detach(y.buffer), detach(x.buffer)]);
      await p;
      const got = await acc.finalize(0);
      return { ok: same(got, want), detail: "correlation matches" };
    }
    case 'assignment': {
      const n = 1500;
      const cost = rand(n * n, 5);
      const want = await linearSumAssignment(cost.slice(), n, n, { maximize: true });
      const p = linearSumAssignment(cost, n, n, { maximize: true });
      await detach(cost.buffer);
      const got = await p;
      return { ok: got.objective === want.objective && same(got.colInd, want.colInd), detail: `objective ${got.objective} vs ${want.objective}` };
    }
    case 'forward': {
      const m = await loadModel(path.join(__dirname, '..', '..', 'models', 'llama-stories260k'));
      const batch = 16;
      const seq = 256;
      const ids = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % m.spec.vocab);
      const want = await m.forward({ ids: ids.slice(), batch, seq }, { output: 'nll' });
      const p = m.forward({ ids, batch, seq }, { output: 'nll' });
      await detach(ids.buffer);
      const got = await p;
      m.dispose();
      return { ok: got.nllSum === want.nllSum, detail: `nllSum ${got.nllSum} vs ${want.nllSum}` };
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

async function main(): Promise<void> {
  for (const scenario of process.argv.slice(2)) {
    let r: { ok: boolean; detail: string };
    try {
      r = await run(scenario);
    } catch (e) {
      r = { ok: false, detail: `threw ${(e as Error).stack ?? String(e)}` };
    }
    process.stdout.write(JSON.stringify({ scenario, ...r }) + '\n');
  }
}
void main();

