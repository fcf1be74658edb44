/**
 * Self-sampled calibration (compress's `calibration: { sample }`): the native sampler, one job on a KV cache,
 * against its pure-JS oracle (test/reference/sample.ts), which reruns every prefix through model.forward, in the
 * same run, on the bundled llama-stories260k (or a model folder given). Both give the same rows (checked here).
 *
 *   npx ts-node --transpile-only benchmarks/sample.ts [--model dir] [--rows 40] [--length 256] [--reps 2]
 */
import * as path from 'node:path';
import * as os from 'node:os';
import { loadModel } from '../lib/model/load';
import { sampleRows } from '../lib/eval/sample';
import { sampleRowsReference } from '../test/reference/sample';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

async function main(): Promise<void> {
  const dir = arg('model', path.join(__dirname, '..', 'models', 'llama-stories260k'));
  const rows = Number(arg('rows', '40'));
  const length = Number(arg('length', '256'));
  const reps = Number(arg('reps', '2'));
  const model = await loadModel(dir);
  try {
    const o = { rows, length, startToken: 1, seed: 1 };
    const best = async (f: () => Promise<Int32Array[]>) => {
      let t = Infinity;
      let out: Int32Array[] = [];
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        out = await f();
        t = Math.min(t, performance.now() - t0);
      }
      return { ms: t, out };
    };
    const native = await best(() => sampleRows(model, o));
    const js = await best(() => sampleRowsReference(model, o));
    const same = native.out.every((r, i) => r.every((t, j) => t === js.out[i]![j]));
    const tokens = rows * (length - 1);
    console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model}; model ${path.basename(dir)}; ${rows} rows × ${length} tokens (${tokens} sampled), best of ${reps}`);
    console.log(`native (KV cache)        ${(native.ms / 1000).toFixed(2)} s  ${Math.round(tokens / (native.ms / 1000))} tokens/s`);
    console.log(`pure JS (prefix rerun)   ${(js.ms / 1000).toFixed(2)} s  ${Math.round(tokens / (js.ms / 1000))} tokens/s`);
    console.log(`ratio ${(js.ms / native.ms).toFixed(1)}×; same rows: ${same}`);
  } finally {
    model.dispose();
  }
}

void main();
