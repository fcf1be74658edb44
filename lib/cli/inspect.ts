/** `ffmerge inspect <model>`: architecture, layers, FF share of parameters, what each k would save. */
import { inspectModel, type ModelSummary } from '../model/inspect';
import { fmtBytes, fmtInt, fmtPct, table } from './format';

/** One line on what an ffmerge output already merged, from config.json's `ffmerge` record. */
function compressedText(info: Record<string, unknown>, stacks: ModelSummary['stacks']): string {
  const windows = Array.isArray(info.windows) ? (info.windows as { stack?: string; window?: string; layers?: unknown }[]) : [];
  // every merge the record lists (a model compressed twice lists both): k layers sharing one FF drop k − 1 copies
  const removed = windows.reduce((n, w) => {
    // a record edited by hand may hold anything: entries that are not { stack, layers } count nothing
    const st = typeof w === 'object' && w !== null ? stacks.find((x) => x.name === w.stack) : undefined;
    return n + (st && Array.isArray(w.layers) && w.layers.length > 1 ? (w.layers.length - 1) * st.ffParamsPerLayer : 0);
  }, 0);
  const ties = typeof info.ties === 'object' && info.ties !== null ? Object.keys(info.ties).length : 0;
  const parts = [
    `already compressed (${String(info.format ?? 'tied')} format)`,
    info.k !== undefined ? `k = ${String(info.k)}` : undefined,
    info.method !== undefined ? `method ${String(info.method)}` : undefined,
    windows.length ? `windows ${windows.map((w) => `${w.stack ?? ''} ${w.window ?? ''}`.trim()).join(', ')}` : undefined,
    ties ? `${ties} tensors tied (stored once, counted once above)` : undefined,
    removed ? `the merges remove ${fmtInt(removed)} FF params in the tied format` : undefined,
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
  if (s.ffmerge) lines.push(`ffmerge      ${compressedText(s.ffmerge, s.stacks)}`);
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
