/**
 * Writing a compressed checkpoint from its source checkpoint plus the FF tensors ffmerge replaced.
 *
 * - `expanded`: the source's tensor names and shapes, every merged position holding the merged weights:
 *   loads anywhere the original loads.
 * - `tied`: each shared tensor stored once; the tie map goes into the safetensors `__metadata__` and
 *   config.json (`ffmerge.ties`), and CheckpointReader (or the README's few lines of Python) restores it.
 *
 * Tensors are streamed one at a time from the source file to the output (memory stays at one tensor), side
 * files (tokenizer, generation config…) are copied, and the whole directory is built under a temporary name
 * beside the target and renamed into place, so a failed or aborted run leaves nothing behind. The input is
 * never overwritten; an existing non-empty output directory is refused unless `overwrite` is set.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, abortError } from '../errors';
import { DTYPE_SIZE, writeSafetensors, type DType, type TensorToWrite } from '../safetensors';
import { architectureOf, stackOf } from '../model/architectures';
import { matrixFromCanonical, type FFWeights } from '../model/ff-weights';
import { CheckpointReader, TIES_METADATA_KEY, type TieMap } from './ties';

export type OutputFormat = 'expanded' | 'tied';

export interface WriteCheckpointOptions {
  /** Source model directory (config.json + model.safetensors, possibly itself a tied ffmerge output). */
  source: string;
  /** Output directory to create. */
  out: string;
  format: OutputFormat;
  /** Replacement tensors by name, float32, in the stored layout and shape of the tensor they replace. */
  replace?: Map<string, Float32Array>;
  /** Names that share one stored tensor: tied name → stored name. In `expanded` output each gets a copy. */
  ties?: TieMap;
  /** Recorded under config.json's `ffmerge` key (method, windows, …); ties are added for `tied`. */
  info?: Record<string, unknown>;
  /** Extra files written into the output directory (e.g. report.json), name → contents. */
  extraFiles?: Record<string, string>;
  overwrite?: boolean;
  signal?: AbortSignal;
}

export interface WriteCheckpointResult {
  out: string;
  /** Bytes of model.safetensors. */
  bytes: number;
  /** Parameters stored in model.safetensors (tied tensors counted once). */
  storedParams: number;
}

/** Files that describe the weights or the fixture's own reference outputs: never copied. */
export function isWeightOrReferenceFile(name: string): boolean {
  return (
    name.endsWith('.safetensors') ||
    name.endsWith('.safetensors.index.json') ||
    name.endsWith('.bin') ||
    name.endsWith('.pt') ||
    name.endsWith('.pth') ||
    name.endsWith('.h5') ||
    name === 'config.json' ||
    name === 'report.json' ||
    /^reference\./.test(name) ||
    name === 'eval.json'
  );
}

/**
 * Refuses an output directory that would overwrite the input or an existing non-empty directory. Call it
 * before any long work so a bad --out fails at once.
 */
export function checkOutputDir(source: string, out: string, overwrite = false): void {
  const src = fs.realpathSync(source);
  const target = path.resolve(out);
  const real = fs.existsSync(target) ? fs.realpathSync(target) : target;
  if (real === src || src.startsWith(real + path.sep)) {
    throw new FfmergeError('OUTPUT_EXISTS', `the output ${out} would overwrite the input model ${source}; choose another --out`);
  }
  if (!fs.existsSync(target)) return;
  const st = fs.statSync(target);
  if (!st.isDirectory()) throw new FfmergeError('OUTPUT_EXISTS', `the output ${out} exists and is not a directory`);
  if (fs.readdirSync(target).length > 0 && !overwrite) {
    throw new FfmergeError('OUTPUT_EXISTS', `the output directory ${out} exists and is not empty (pass --overwrite to replace it)`);
  }
}



interface PlannedTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Where the bytes come from: a replacement array, or a source tensor name. */
  data: Float32Array | { from: string };
}

export async function writeCheckpoint(opts: WriteCheckpointOptions): Promise<WriteCheckpointResult> {
  const { source, out, format } = opts;
  checkOutputDir(source, out, opts.overwrite);
  const src = await CheckpointReader.open(source);
  const config = JSON.parse(fs.readFileSync(path.join(source, 'config.json'), 'utf8')) as Record<string, unknown>;
  const replace = opts.replace ?? new Map<string, Float32Array>();
  for (const [name, data] of replace) {
    const info = src.info(name);
    const n = info.shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new FfmergeError('SHAPE_MISMATCH', `replacement for "${name}" has ${data.length} values, the tensor has ${n} (${info.shape.join('×')})`);
    }
  }
  // The ties the output keeps: those the source already had plus the new ones.
  const ties: TieMap = { ...src.ties, ...(opts.ties ?? {}) };
  for (const [name, target] of Object.entries(ties)) {
    if (!src.has(name) || !src.has(target)) {
      throw new FfmergeError('TENSOR_NOT_FOUND', `tie ${name} → ${target} names a tensor the checkpoint does not have`);
    }
    if (target in ties) throw new FfmergeError('INVALID_ARGUMENT', `tie ${name} → ${target}: "${target}" is itself tied`);
  }

  const plan: PlannedTensor[] = [];
  for (const name of src.names()) {
    if (format === 'tied' && name in ties) continue;
    const info = src.info(name);
    const rep = replace.get(ties[name] ?? name) ?? replace.get(name);
    if (rep) {
      // F16/BF16 checkpoints keep their dtype: the writer rounds the float32 replacement to nearest even.
      const bytes = (rep.length * DTYPE_SIZE[info.dtype]) as number;
      if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
        throw new FfmergeError('INVALID_ARGUMENT', `"${name}" is stored as ${info.dtype}; FF weights must be floating point`);
      }
      plan.push({ name, dtype: info.dtype, shape: info.shape, byteLength: bytes, data: rep });
    } else {
      plan.push({ name, dtype: info.dtype, shape: info.shape, byteLength: info.byteLength, data: { from: name } });
    }
  }

  const metadata: Record<string, string> = { format: 'pt' };
  const ffmergeInfo: Record<string, unknown> = { format, ...(opts.info ?? {}) };
  if (format === 'tied' && Object.keys(ties).length) {
    metadata[TIES_METADATA_KEY] = JSON.stringify(ties);
    ffmergeInfo.ties = ties;
  }
  const outConfig = { ...config, ffmerge: ffmergeInfo };

  const target = path.resolve(out);
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.ffmerge-tmp-${process.pid}-${Date.now()}`);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.mkdirSync(tmp);
  try {
    // Streamed: each source tensor is read just before it is written, so memory holds one tensor at a time.
    const file = path.join(tmp, 'model.safetensors');
    const tensors: TensorToWrite[] = plan.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      // isView, not instanceof: arrays made by the native addon may come from another JS realm (jest)
      data: ArrayBuffer.isView(t.data)
          ? t.data
        : async () => {
              if (opts.signal?.aborted) throw abortError();
              return src.readRaw((t.data as { from: string }).from);
            },
    }));
    await writeSafetensors(file, tensors, metadata);
    if (opts.signal?.aborted) throw abortError();
    const bytes = fs.statSync(file).size;
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(outConfig, null, 2) + '\n');
    for (const ent of fs.readdirSync(source, { withFileTypes: true })) {
      if (!ent.isFile() || isWeightOrReferenceFile(ent.name)) continue;
      fs.copyFileSync(path.join(source, ent.name), path.join(tmp, ent.name));
      // the output is the user's to edit: a read-only input (a shared cache, a read-only mount) stays read-only there only
      fs.chmodSync(path.join(tmp, ent.name), fs.statSync(path.join(tmp, ent.name)).mode | 0o200);
    }
    for (const [name, text] of Object.entries(opts.extraFiles ?? {})) fs.writeFileSync(path.join(tmp, name), text);
    if (opts.signal?.aborted) throw abortError();
    // Into place: an empty or (with overwrite) old directory is moved aside first, then removed.
    if (fs.existsSync(target)) {
      const old = `${tmp}-old`;
      fs.renameSync(target, old);
      fs.renameSync(tmp, target);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
    const storedParams = plan.reduce((s, t) => s + t.byteLength / DTYPE_SIZE[t.dtype], 0);
    return { out: target, bytes, storedParams };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    await src.close();
  }
}

/** The replacement tensors (stored layout) for one FF sublayer given in canonical layout. */
export function ffReplacements(
  config: Record<string, unknown>,
  stack: 'decoder' | 'encoder',
  layer: number,
  ff: FFWeights,
): Map<string, Float32Array> {
  const names = stackOf(architectureOf(config), stack).ff(config, layer);
  const out = new Map<string, Float32Array>();
  out.set(names.wIn, matrixFromCanonical(ff.wIn, ff.dFF, ff.d, names.layout));
  out.set(names.wOut, matrixFromCanonical(ff.wOut, ff.d, ff.dFF, names.layout));
  if (names.wGate && ff.wGate) out.set(names.wGate, matrixFromCanonical(ff.wGate, ff.dFF, ff.d, names.layout));
  if (names.bIn && ff.bIn) out.set(names.bIn, ff.bIn);
  if (names.bGate && ff.bGate) out.set(names.bGate, ff.bGate);
  if (names.bOut && ff.bOut) out.set(names.bOut, ff.bOut);
  return out;
}

/** Ties every FF tensor of layers[1..] to the same tensor of layers[0] (the stored copy). */
export function ffTies(config: Record<string, unknown>, stack: 'decoder' | 'encoder', layers: number[]): TieMap {
  const st = stackOf(architectureOf(config), stack);
  const first = layers[0];
  if (first === undefined) return {};
  const keys = ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const;
  const stored = st.ff(config, first);
  const ties: TieMap = {};
  for (const l of layers.slice(1)) {
    const names = st.ff(config, l);
    for (const key of keys) {
      const a = names[key];
      const b = stored[key];
      if (a && b) ties[a] = b;
    }
  }
  return ties;
}
