/** `ffmerge export <model> --format onnx --out dir`: a checkpoint (merged or not) as an ONNX folder. */
import * as path from 'node:path';
import { exportOnnx } from '../export/onnx/export';
import type { WeightDType } from '../export/onnx/weights';
import { oneOf } from './flags';
import { fmtBytes, printResult } from './format';
import { ProgressBar } from './progress';

export interface ExportCliOptions {
  format: string;
  out: string;
  dtype: string;
  externalData: string;
  overwrite?: boolean | undefined;
  json?: boolean | undefined;
}

export async function runExport(model: string, o: ExportCliOptions, signal: AbortSignal): Promise<void> {
  oneOf(o.format, ['onnx'], 'format');
  const dtype = oneOf<WeightDType>(o.dtype, ['fp32', 'fp16'], 'dtype');
  const ext = oneOf(o.externalData, ['auto', 'always'], 'external-data');
  const bar = new ProgressBar(!o.json);
  const r = await bar.watch(exportOnnx(model, { out: o.out, dtype, externalData: ext === 'always' ? true : 'auto', overwrite: Boolean(o.overwrite), signal, onProgress: bar.update }));
  bar.done();
  // a merge exported unshared is a saving the user expected and does not get: said on stderr, --json or not
  for (const u of r.unshared) process.stderr.write(`ffmerge: warning: ${u.stack} window ${u.window} exported unshared (each layer its own FF): ${u.reason}\n`);
  const shared = r.tensorUses - r.weightTensors;
  printResult(o.json, r, () =>
    `wrote ${r.files.map((f) => path.join(r.out, f.file)).join(' + ')} (${r.external ? `${fmtBytes(r.onnxBytes)} + ${fmtBytes(r.dataBytes)} of weights in .onnx_data files` : fmtBytes(r.onnxBytes)}, ${r.dtype} weights): ` +
      `${r.weightTensors} weight tensors` +
      (shared > 0 ? `, ${shared} more uses served by shared ones` : ''),
  );
}
