/**
 * What a checkpoint holds and what merging would save: architecture, layers, parameters, the FF share, and
 * for each k the parameters and bytes a merge of k FF sublayers removes (k−1 FF parameter sets per stack).
 * Reads only config.json and the safetensors header, so it is instant on any model size.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError } from '../errors';
import { CheckpointReader } from '../checkpoint/ties';
import { DTYPE_SIZE } from '../safetensors';
import { ffStacks } from './architectures';


export interface StackSummary {
  name: 'decoder' | 'encoder';
  layers: number;
  /** Parameters of one FF sublayer (all its tensors). */
  ffParamsPerLayer: number;
  ffBytesPerLayer: number;
}

export interface KSaving {
  k: number;
  paramsRemoved: number;
  bytesRemoved: number;
  /** paramsRemoved / totalParams. */
  fraction: number;
}

export interface ModelSummary {
  dir: string;
  modelType: string;
  architectures: string[];
  stacks: StackSummary[];
  /** Parameters stored in the checkpoint (tied tensors counted once). */
  totalParams: number;
  totalBytes: number;
  ffParams: number;
  ffShare: number;
  /** Already merged by ffmerge (a tied output): the recorded info. */
  ffmerge?: Record<string, unknown>;
  savings: KSaving[];
}

export function readConfig(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) {
    throw new FfmergeError('DATA_NOT_FOUND', `${dir} is not a model directory (no config.json)`);
  }
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new FfmergeError('INVALID_CONFIG', `${file} is not valid JSON: ${(e as Error).message}`);
  }
}

export async function inspectModel(dir: string): Promise<ModelSummary> {
  const config = readConfig(dir);
  const stacks = ffStacks(config);
  const ckpt = await CheckpointReader.open(dir);
  let totalParams = 0;
  let totalBytes = 0;
  for (const name of ckpt.storedNames()) {
    const info = ckpt.info(name);
    const n = info.shape.reduce((a, b) => a * b, 1);
    totalParams += n;
    totalBytes += n * DTYPE_SIZE[info.dtype];
  }
  const summaries: StackSummary[] = stacks.map((s) => {
    const names = s.ff(0);
    let params = 0;
    let bytes = 0;
    for (const key of ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const) {
      const t = names[key];
      if (t === undefined || !ckpt.has(t)) continue;
      const info = ckpt.info(t);
      const n = info.shape.reduce((a, b) => a * b, 1);
      params += n;
      bytes += n * DTYPE_SIZE[info.dtype];
    }
    return { name: s.name, layers: s.layers, ffParamsPerLayer: params, ffBytesPerLayer: bytes };
  });
  // FF parameters as stored: in a tied (compressed) checkpoint the layers of a merged window share one copy,
  // which counts once, as it does in totalParams.
  const storedFF = new Set<string>();
  let ffParams = 0;
  for (const s of stacks) {
    for (let l = 0; l < s.layers; l++) {
      const names = s.ff(l);
      for (const key of ['wIn', 'bIn', 'wGate', 'bGate', 'wOut', 'bOut'] as const) {
        const t = names[key];
        if (t === undefined || !ckpt.has(t) || storedFF.has(ckpt.resolve(t))) continue;
        storedFF.add(ckpt.resolve(t));
        ffParams += ckpt.info(t).shape.reduce((a, b) => a * b, 1);
      }
    }
  }
  const minLayers = Math.min(...summaries.map((s) => s.layers));
  const savings: KSaving[] = [];
  for (let k = 2; k <= minLayers; k++) {
    const paramsRemoved = summaries.reduce((a, s) => a + (k - 1) * s.ffParamsPerLayer, 0);
    const bytesRemoved = summaries.reduce((a, s) => a + (k - 1) * s.ffBytesPerLayer, 0);
    savings.push({ k, paramsRemoved, bytesRemoved, fraction: paramsRemoved / totalParams });
  }
  await ckpt.close();
  const archs = Array.isArray(config.architectures) ? (config.architectures as string[]) : [];
  return {
    dir: path.resolve(dir),
    modelType: String(config.model_type),
    architectures: archs,
    stacks: summaries,
    totalParams,
    totalBytes,
    ffParams,
    ffShare: ffParams / totalParams,
    ...(typeof config.ffmerge === 'object' && config.ffmerge ? { ffmerge: config.ffmerge as Record<string, unknown> } : {}),
    savings,
  };
}
