/** `ffmerge convert <dir> --format expanded|tied --out <dir>`: an ffmerge output in the other format. */
import { convertCheckpoint } from '../checkpoint/convert';
import type { OutputFormat } from '../checkpoint/write';
import { oneOf } from './flags';
import { fmtBytes } from './format';

export async function runConvert(model: string, o: { format: string; out: string; overwrite?: boolean; json?: boolean }, signal: AbortSignal): Promise<void> {
  const format = oneOf<OutputFormat>(o.format, ['tied', 'expanded'], 'format');
  const r = await convertCheckpoint(model, o.out, format, { ...(o.overwrite ? { overwrite: true } : {}), signal });
  process.stdout.write(
    o.json
      ? JSON.stringify({ ok: true, out: r.out, format, bytes: r.bytes, storedParams: r.storedParams }, null, 2) + '\n'
      : `wrote the ${format} checkpoint ${r.out} (${fmtBytes(r.bytes)})\n`,
  );
}
