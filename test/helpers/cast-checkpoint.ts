/**
 * Copies of a checkpoint folder with the floating-point tensors cast: to BF16/F16 (the writer rounds to
 * nearest even), to F64, or to F32 holding the values a BF16 copy holds (the "same weights in float32" a 16-bit
 * model is compared against). Side files (config, tokenizer) are copied; reference files are not.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsReader, toF32, writeSafetensors, f32ToBF16, f32ToF16, type DType, type TensorToWrite } from '../../lib/safetensors';

export type CastTo = 'BF16' | 'F16' | 'F64' | 'F32-of-BF16';

/** `only2d`: matrices only; `names`: only the tensors it accepts (a checkpoint cast layer by layer). */
export async function castCheckpoint(src: string, dst: string, to: CastTo, opts: { only2d?: boolean; names?: (name: string) => boolean } = {}): Promise<void> {
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (f.endsWith('.safetensors') || f.startsWith('reference') || f === 'eval.json') continue;
    fs.copyFileSync(path.join(src, f), path.join(dst, f));
    fs.chmodSync(path.join(dst, f), 0o644);
  }
  const r = await SafetensorsReader.open(src);
  try {
    const tensors: TensorToWrite[] = [];
    for (const name of r.names()) {
      const info = r.info(name);
      const float = info.dtype === 'F32' || info.dtype === 'F16' || info.dtype === 'BF16' || info.dtype === 'F64';
      const cast = float && (!opts.only2d || info.shape.length >= 2) && (!opts.names || opts.names(name));
      if (!cast) {
        tensors.push({ name, dtype: info.dtype, shape: info.shape, data: await r.readRaw(name) });
        continue;
      }
      const x = await r.readF32(name);
      let dtype: DType;
      let data: ArrayBufferView;
      if (to === 'BF16') [dtype, data] = ['BF16', f32ToBF16(x)];
      else if (to === 'F16') [dtype, data] = ['F16', f32ToF16(x)];
      else if (to === 'F64') [dtype, data] = ['F64', Float64Array.from(x)];
      else {
        const b = f32ToBF16(x);
        [dtype, data] = ['F32', toF32('BF16', new Uint8Array(b.buffer, b.byteOffset, b.byteLength))];
      }
      tensors.push({ name, dtype, shape: info.shape, data });
    }
    await writeSafetensors(path.join(dst, 'model.safetensors'), tensors, r.metadata);
  } finally {
    await r.close();
  }
}
