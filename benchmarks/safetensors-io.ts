/**
 * Checkpoint I/O throughput: write a synthetic checkpoint (F32 + BF16 tensors) with writeSafetensors, then
 * read every tensor as float32 with SafetensorsReader; the peer, measured in the same run on the same file,
 * is numpy (python3): header parsed with json, np.fromfile per tensor, BF16 widened by a 16-bit shift.
 *
 *   npx ts-node --transpile-only benchmarks/safetensors-io.ts [MiB]
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsReader, TensorToWrite, writeSafetensors } from '../lib/safetensors';

const MIB = Number(process.argv[2] ?? 64);
const REPS = 5;

const PY_READ = `
import json, sys, time, numpy as np
f = sys.argv[1]; reps = int(sys.argv[2])
best = 1e9
for _ in range(reps):
    t0 = time.perf_counter()
    with open(f, 'rb') as fh:
        n = int.from_bytes(fh.read(8), 'little')
        h = json.loads(fh.read(n))
    start = 8 + n
    total = 0
    for name, e in h.items():
        if name == '__metadata__': continue
        b, en = e['data_offsets']
        if e['dtype'] == 'F32':
            a = np.fromfile(f, dtype='<f4', count=(en - b) // 4, offset=start + b)
        else:
            u = np.fromfile(f, dtype='<u2', count=(en - b) // 2, offset=start + b)
            a = (u.astype(np.uint32) << 16).view(np.float32)
        total += a.size
    best = min(best, time.perf_counter() - t0)
print(best)
`;

const PY_WRITE = `
import json, os, sys, time, numpy as np
f = sys.argv[1]; mib = int(sys.argv[2]); reps = int(sys.argv[3])
n = mib * 1024 * 1024 // 4 // 16
rng = np.random.default_rng(0)
ts = [('w%d' % i, rng.standard_normal(n, dtype=np.float32)) for i in range(16)]
best = 1e9
for _ in range(reps):
    t0 = time.perf_counter()
    h = {}; off = 0
    for name, a in ts:
        h[name] = {'dtype': 'F32', 'shape': [a.size], 'data_offsets': [off, off + a.nbytes]}; off += a.nbytes
    j = json.dumps(h).encode(); j += b' ' * ((8 - (8 + len(j)) % 8) % 8)
    tmp = f + '.tmp'
    with open(tmp, 'wb') as fh:
        fh.write(len(j).to_bytes(8, 'little')); fh.write(j)
        for _, a in ts: a.tofile(fh)
        fh.flush(); os.fsync(fh.fileno())
    os.replace(tmp, f)
    best = min(best, time.perf_counter() - t0)
print(best)
`;

async function timeBest(fn: () => Promise<void>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < REPS; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, dt);
  }
  return best;
}

function python(code: string, args: string[]): number | undefined {
  try {
    return Number(execFileSync('python3', ['-c', code, ...args], { encoding: 'utf8' }).trim());
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-bench-'));
  try {
    const file = path.join(dir, 'bench.safetensors');
    // Half the bytes F32, half BF16, 16 tensors each.
    const n32 = (MIB * 1024 * 1024) / 2 / 4 / 16;
    const n16 = (MIB * 1024 * 1024) / 2 / 2 / 16;
    const tensors: TensorToWrite[] = [];
    for (let i = 0; i < 16; i++) {
      const a = new Float32Array(n32).map((_, j) => Math.sin(i + j));
      tensors.push({ name: `f32.${i}`, dtype: 'F32', shape: [n32], data: a });
      const b = new Float32Array(n16).map((_, j) => Math.cos(i + j));
      tensors.push({ name: `bf16.${i}`, dtype: 'BF16', shape: [n16], data: () => b });
    }
    const writeF32Only = tensors.filter((t) => t.dtype === 'F32');
    const fileW = path.join(dir, 'w.safetensors');
    const tWrite = await timeBest(() => writeSafetensors(fileW, writeF32Only));
    await writeSafetensors(file, tensors);

    const tRead = await timeBest(async () => {
      const r = await SafetensorsReader.open(file);
      for (const name of r.names()) await r.readF32(name);
      await r.close();
    });

    const pyRead = python(PY_READ, [file, String(REPS)]);
    const pyWrite = python(PY_WRITE, [path.join(dir, 'py.safetensors'), String(MIB / 2), String(REPS)]);

    const line = (what: string, mib: number, ours: number, peer: number | undefined) =>
      console.log(
        `${what.padEnd(34)} ffmerge ${(mib / ours).toFixed(0).padStart(6)} MiB/s` +
          (peer === undefined ? '   numpy: unavailable' : `   numpy ${(mib / peer).toFixed(0).padStart(6)} MiB/s   ratio (numpy time / ffmerge time) ${(peer / ours).toFixed(2)}`),
      );
    console.log(`checkpoint ${MIB} MiB (half F32, half BF16), best of ${REPS}; node ${process.version}`);
    line('read all tensors as float32', MIB, tRead, pyRead);
    line(`write ${MIB / 2} MiB F32 (fsync, rename)`, MIB / 2, tWrite, pyWrite);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
