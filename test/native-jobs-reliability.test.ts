/**
 * Native jobs against a hostile caller: an input's ArrayBuffer transferred away while the job runs (each
 * case in a child process, so a use-after-free crashes the child and fails the test instead of killing jest),
 * and matmul stopping promptly on abort.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { matmul } from '../lib/native/gemm';

const root = path.join(__dirname, '..');

const SCENARIOS = ['matmul-input', 'matmul-out', 'correlation', 'assignment', 'forward'];

/** All scenarios in one child (one ts-node start-up); a crash leaves the later scenarios without a line. */
function runChild(): { results: Map<string, { ok: boolean; detail: string }>; status: number | null; signal: string | null; stderr: string } {
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', '-r', 'ts-node/register/transpile-only', path.join(__dirname, 'helpers', 'detach-child.ts'), ...SCENARIOS],
    { cwd: root, encoding: 'utf8', timeout: 90_000 },
  );
  const results = new Map<string, { ok: boolean; detail: string }>();
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as { scenario: string; ok: boolean; detail: string };
    results.set(o.scenario, { ok: o.ok, detail: o.detail });
  }
  return { results, status: r.status, signal: r.signal, stderr: r.stderr.slice(-500) };
}

describe('an input buffer transferred while a native job runs', () => {
  let child: ReturnType<typeof runChild>;
  beforeAll(() => {
    child = runChild();
  });

  it('the child process exits normally (no SIGSEGV)', () => {
    expect({ status: child.status, signal: child.signal }).toEqual({ status: 0, signal: null });
  });

  // Before inputs were copied: matmul and linearSumAssignment computed on freed memory (garbage or SIGSEGV),
  // the correlation added garbage, Model.forward segfaulted.
  it.each(['matmul-input', 'correlation', 'assignment', 'forward'])('%s: the job computes on its own copy', (scenario) => {
    expect(child.results.get(scenario)).toEqual({ ok: true, detail: expect.any(String) });
  });

  it('matmul with a detached out: rejects with BUFFER_DETACHED, writes nothing', () => {
    expect(child.results.get('matmul-out')).toEqual({ ok: true, detail: 'rejected with BUFFER_DETACHED' });
  });
});

describe('matmul and abort', () => {
  it('stops within a cache block of the abort, leaving out untouched', async () => {
    // Large enough that one multiply takes far longer than a busy event loop's delay in delivering the
    // abort (CI runs two jest workers on two cores: a 20 ms timer can fire 60 ms late).
    const n = 3072;
    const a = new Float32Array(n * n).fill(1);
    const b = new Float32Array(n * n).fill(1);
    // Time one full multiply first, so the check holds on slow and fast machines alike.
    const t0 = performance.now();
    await matmul(a, b, { m: n, n, k: n });
    const full = performance.now() - t0;
    const out = new Float32Array(n * n).fill(7);
    const ac = new AbortController();
    let t1 = 0;
    // Abort when the job reports that it started: the multiply is then under way, not queued.
    const p = matmul(a, b, { m: n, n, k: n }, {
      out,
      signal: ac.signal,
      onProgress: () => {
        if (t1 === 0) {
          t1 = performance.now();
          ac.abort();
        }
      },
    });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    const took = performance.now() - t1;
    // Before: the multiply ran to the end whatever the signal said (took ≈ full).
    expect(t1).toBeGreaterThan(0);
    expect(took).toBeLessThan(full / 2);
    expect(out[0]).toBe(7);
    expect(out[out.length - 1]).toBe(7);
  });
});
