/** `ffmerge inspect <model>`: architecture, layers, FF share of parameters, what each k would save. */
import { inspectModel, type ModelSummary } from '../model/inspect';
import { fmtBytes, fmtInt, fmtPct, table } from './format';

/** One line on what an ffmerge output already merged, from config.json's `ffmerge` record. */
function compressedText(info: Record<string, unknown>): string {
  const windows = Array.isArray(info.windows) ? (info.windows as { stack?: string; window?: string }[]) : [];
  const ties = typeof info.ties === 'object' && info.ties !== null ? Object.keys(info.ties).length : 0;
  const parts = [
    `already compressed (${String(info.format ?? 'tied')} format)`,
    info.k !== undefined ? `k = ${String(info.k)}` : undefined,
    info.method !== undefined ? `method ${String(info.method)}` : undefined,
    windows.length ? `windows ${windows.map((w) => `${w.stack ?? ''} ${w.window ?? ''}`.trim()).join(', ')}` : undefined,
    ties ? `${ties} tensors tied (stored once, counted once above)` : undefined,
  ];
  return parts.filter(Boolean).join(', ');
}

export function formatSummary(s: ModelSummary): string {
  const lines = [
    `model        ${s.dir}`,
    `architecture ${s.architectures.join(', ') || s.modelType} (model_type ${s.modelType})`,
    ...s.stacks.map(
      (st) => `${st.name.padEnd(12)} ${st.layers} layers, FF sublayer ${fmtInt(st.ffParamsPerLayer)} params (${fmtBytes(st.ffBytesPerLayer)})`,
    ),
    `parameters   ${fmtInt(s.totalParams)} stored (${fmtBytes(s.totalBytes)}); FF sublayers ${fmtInt(s.ffParams)} = ${fmtPct(s.ffShare)}`,
  ];
  if (s.ffmerge) lines.push(`ffmerge      ${compressedText(s.ffmerge)}`);
  lines.push('', 'merging k adjacent FF sublayers into one removes:');
  lines.push(
    table(
      ['k', 'params removed', 'bytes removed', 'of total'],
      s.savings.map((v) => [v.k, fmtInt(v.paramsRemoved), fmtBytes(v.bytesRemoved), fmtPct(v.fraction)]),
    ),
  );
  return lines.join('\n');
}

export async function runInspect(model: string, json: boolean): Promise<void> {
  const s = await inspectModel(model);
  process.stdout.write(json ? JSON.stringify({ ok: true, ...s }, null, 2) + '\n' : formatSummary(s) + '\n');
}
