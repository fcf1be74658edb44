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
  const bar = new ProgressBar(!o.json);
  const opts = { ...(o.overwrite ? { overwrite: true } : {}), ...(maxShardSize !== undefined ? { maxShardSize } : {}), signal, onProgress: bar.update };
  const r = await bar.watch(convertCheckpoint(model, o.out, format, opts));
  bar.done();
  printResult(o.json, { out: r.out, format, bytes: r.bytes, files: r.files, storedParams: r.storedParams }, () =>
    `wrote the ${format} checkpoint ${r.out} (${fmtBytes(r.bytes)}${r.files.length > 1 ? ` in ${r.files.length} shards` : ''})`,
  );
}
