'use strict';
// One native correlation run in its own process, so that its peak RSS (VmHWM) is its own: loaded by
// benchmarks/correlation-llm.ts as `node correlation-child.js <addon.node> <N> <d> <reps>`. Plain JS on the
// raw addon API (no ts-node, no TS wrapper: nothing but the data and the addon in the process), so that
// an older build of the addon (e.g. main's, for a before/after in the same run) can be measured the same way.
// Prints one JSON line: best wall seconds, CPU seconds of that run, VmHWM in kB.
const fs = require('node:fs');

const [addonPath, nArg, dArg, repsArg] = process.argv.slice(2);
const N = Number(nArg), D = Number(dArg), REPS = Number(repsArg ?? 1);
const addon = require(addonPath);

function randomMatrix(rows, d, seed) {
  // xorshift32 uniforms in [-1, 1) plus a per-unit offset (as benchmarks/correlation.ts)
  let s = seed >>> 0 || 1;
  const out = new Float32Array(rows * d);
  for (let k = 0; k < out.length; k++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[k] = (s >>> 0) / 2147483648 - 1 + (k % d) * 1e-3;
  }
  return out;
}

function hwmKb() {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function main() {
  const x = randomMatrix(N, D, 1);
  const y = randomMatrix(N, D, 2);
  let best = { seconds: Infinity, cpuSeconds: Infinity };
  for (let r = 0; r < REPS; r++) {
    const acc = new addon.CorrelationAccumulator([D, D], Int32Array.of(0, 1));
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await acc.add([x, y], N, undefined).promise;
    const c = await acc.finalize(0, undefined).promise;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cu = process.cpuUsage(c0);
    if (c.length !== D * D) throw new Error('unexpected result size');
    if (seconds < best.seconds) best = { seconds, cpuSeconds: (cu.user + cu.system) / 1e6 };
  }
  process.stdout.write(JSON.stringify({ ...best, hwmKb: hwmKb(), kernel: addon.buildInfo ? addon.buildInfo().gemmKernel : '' }) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
