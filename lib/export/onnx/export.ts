/**
 * exportOnnx(model, {out}): a checkpoint folder (tied or not) → a folder laid out as Hugging Face Optimum's
 * exports are, which onnxruntime and transformers.js load as they load Optimum's:
 *   out/onnx/model.onnx (+ model.onnx_data above 2 GB), config.json, generation_config.json, tokenizer files.
 * Each stored tensor of the checkpoint is one initializer, so the FF a merged window shares is held once by
 * the runtime too. The folder is built under a temporary name beside `out` and renamed into place.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, abortError } from '../../errors';
import { checkOutputDir, isWeightOrReferenceFile } from '../../checkpoint/write';
import type { TieMap } from '../../checkpoint/ties';
import { readConfig } from '../../model/load';
import { architectureOf, type Architecture, type Config } from '../../model/architectures';
import { validateSpec } from '../../model/validate-spec';
import type { JobOptions } from '../../native/job';
import { buildDecoderLm } from './decoder-lm';
import { Graph } from './graph';
import { writeOnnx, OPSET } from './serialize';
import { ExportWeights, type WeightDType } from './weights';
import { buildVitClassifier } from './vit';

export interface ExportOnnxOptions extends JobOptions {
  out: string;
  /** Weight precision in the file (computation stays float32): fp32 (default) or fp16. */
  dtype?: WeightDType;
  /** External data file: 'auto' (default) = only when the weights pass 2 GB. */
  externalData?: boolean | 'auto';
  /** Replacement tensors (stored layout) and extra ties, as compress gives writeCheckpoint. */
  replace?: Map<string, Float32Array>;
  ties?: TieMap;
  /** Recorded under config.json's `ffmerge` key. */
  info?: Record<string, unknown>;
  /** Extra files written into the output folder (e.g. report.json), name → contents. */
  extraFiles?: Record<string, string>;
  overwrite?: boolean;
}

export interface ExportOnnxResult {
  out: string;
  /** onnx/model.onnx and its external data file (0 when inline). */
  onnxBytes: number;
  dataBytes: number;
  external: boolean;
  dtype: WeightDType;
  /** Weight initializers (each stored tensor once) and the bytes they take. */
  weightTensors: number;
  weightBytes: number;
  /** Logical checkpoint tensors the graph reads; minus weightTensors = uses served by a shared initializer. */
  tensorUses: number;
}

export const ONNX_DIR = 'onnx';
export const ONNX_FILE = 'model.onnx';

/** The graph builder for a model's architecture; refuses the ones the exporter does not cover. */
function builderFor(arch: Architecture, config: Config): (g: Graph, w: ExportWeights) => void {
  const main = arch.stacks.find((s) => s.name === arch.mainStack)!;
  const spec = main.spec(config);
  validateSpec(spec);
  const tensors = main.tensors(config, spec);
  if (arch.stacks.length === 1 && spec.input === 'tokens' && spec.head === 'lm') return (g, w) => buildDecoderLm(g, w, spec, tensors);
  if (arch.stacks.length === 1 && spec.input === 'patches' && spec.head === 'classifier') return (g, w) => buildVitClassifier(g, w, spec, tensors);
  throw new FfmergeError(
    'UNSUPPORTED_ARCHITECTURE',
    `ONNX export supports decoder-only language models (gpt2, llama, qwen2, mistral) and ViT classifiers; ${arch.modelType} is not one yet`,
  );
}

/** Throws UNSUPPORTED_ARCHITECTURE (or a config error) unless exportOnnx can export this model; reads config.json only. */
export async function checkOnnxExportable(modelDir: string): Promise<void> {
  const config = await readConfig(modelDir);
  builderFor(architectureOf(config), config);
}

/** generation_config.json for the folder: the source's, or the special ids config.json gives. */
function generationConfig(source: string, config: Config): string {
  const file = path.join(source, 'generation_config.json');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8');
  const gen: Record<string, unknown> = {};
  for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id', 'decoder_start_token_id']) if (config[k] != null) gen[k] = config[k];
  return JSON.stringify(gen, null, 2) + '\n';
}

export async function exportOnnx(modelDir: string, opts: ExportOnnxOptions): Promise<ExportOnnxResult> {
  if (typeof opts !== 'object' || opts === null || typeof opts.out !== 'string') {
    throw new FfmergeError('INVALID_ARGUMENT', 'exportOnnx(modelDir, options): options.out must be the output folder');
  }
  if (opts.signal?.aborted) throw abortError();
  checkOutputDir(modelDir, opts.out, opts.overwrite);
  const config = await readConfig(modelDir);
  const build = builderFor(architectureOf(config), config);
  const dtype = opts.dtype ?? 'fp32';
  const weights = await ExportWeights.open(modelDir, { dtype, ...(opts.replace ? { replace: opts.replace } : {}), ...(opts.ties ? { ties: opts.ties } : {}) });
  const target = path.resolve(opts.out);
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.ffmerge-tmp-${process.pid}-${Date.now()}`);
  try {
    const g = new Graph(`${String(config.model_type)}-ffmerge`);
    build(g, weights);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.mkdirSync(path.join(tmp, ONNX_DIR), { recursive: true });
    const written = await writeOnnx(g, path.join(tmp, ONNX_DIR, ONNX_FILE), {
      externalData: opts.externalData ?? 'auto',
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    const weightTensors = g.initializers.filter((i) => i.kind === 'weight').length;
    const prev = (config.ffmerge ?? {}) as Record<string, unknown>;
    const outConfig: Config = {
      ...config,
      ffmerge: { ...prev, ...(opts.info ?? {}), ...(opts.ties && Object.keys(opts.ties).length ? { ties: { ...((prev.ties as TieMap) ?? {}), ...opts.ties } } : {}), onnx: { opset: OPSET, dtype, external: written.external } },
      // transformers.js reads this to fetch model.onnx_data beside model.onnx
      ...(written.external ? { 'transformers.js_config': { ...((config['transformers.js_config'] as object) ?? {}), use_external_data_format: true } } : {}),
    };
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(outConfig, null, 2) + '\n');
    fs.writeFileSync(path.join(tmp, 'generation_config.json'), generationConfig(modelDir, config));
    for (const ent of fs.readdirSync(modelDir, { withFileTypes: true })) {
      if (!ent.isFile() || isWeightOrReferenceFile(ent.name) || ent.name === 'generation_config.json') continue;
      fs.copyFileSync(path.join(modelDir, ent.name), path.join(tmp, ent.name));
    }
    for (const [name, text] of Object.entries(opts.extraFiles ?? {})) fs.writeFileSync(path.join(tmp, name), text);
    if (opts.signal?.aborted) throw abortError();
    if (fs.existsSync(target)) {
      const old = `${tmp}-old`;
      fs.renameSync(target, old);
      fs.renameSync(tmp, target);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
    return {
      out: target,
      onnxBytes: written.onnxBytes,
      dataBytes: written.dataBytes,
      external: written.external,
      dtype,
      weightTensors,
      weightBytes: written.weightBytes,
      tensorUses: weights.uses.size,
    };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    await weights.close();
  }
}
