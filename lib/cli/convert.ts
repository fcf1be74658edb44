/** `ffmerge convert <dir> --format expanded|tied --out <dir>`: an ffmerge output in the other format. */
import { convertCheckpoint } from '../checkpoint/convert';
import type { OutputFormat } from '../checkpoint/write';
import { byteSize, oneOf } from './flags';
import { fmtBytes, printResult } from './format';
import { ProgressBar } from './progress';

export interface ConvertCliOptions {
  format: string;
  out: string;
  overwrite?: boolean | undefined;
  maxShardSize?: string | undefined;
  json?: boolean | undefined;
}

export async function runConvert(model: string, o: ConvertCliOptions, signal: AbortSignal): Promise<void> {
  const format = oneOf<OutputFormat>(o.format, ['tied', 'expanded'], 'format');
  const maxShardSize = byteSize(o.maxShardSize, 'max-shard-size');
  // the copies compared (to tied) and the bytes written, shown as export and compress show them (tester ET: silent)
  const bar = new ProgressBar(!o.json);
  const r = await convertCheckpoint(model, o.out, format, { ...(o.overwrite ? { overwrite: true } : {}), ...(maxShardSize !== undefined ? { maxShardSize } : {}), signal, onProgress: bar.update }).catch((e: unknown) => {
    bar.interrupt();
    throw e;
  });
  bar.done();
  printResult(o.json, { out: r.out, format, bytes: r.bytes, files: r.files, storedParams: r.storedParams }, () =>
    `wrote the ${format} checkpoint ${r.out} (${fmtBytes(r.bytes)}${r.files.length > 1 ? ` in ${r.files.length} shards` : ''})`,
  );
}
