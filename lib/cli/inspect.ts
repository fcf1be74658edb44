/** `ffmerge inspect <model>`: architecture, layers, FF share of parameters, what each k would save. */
import { inspectModel, type ModelSummary, type StackSummary } from '../model/inspect';
import { kLabel } from '../merge/windows';
import { fmtBytes, fmtInt, fmtPct, printResult, table } from './format';
import { counted } from '../errors';
import { ProgressBar } from './progress';
import { trainingRuns } from '../checkpoint/training-record';
import { modelOrBundled } from './flags';

/**
 * "k = 3", "method permute": the record's top-level k and method are its last compress's, so they are shown as
 * such only when every merge shares them; a model compressed twice with another k or method lists each.
 */
function kAndMethod(info: Record<string, unknown>, windows: readonly { stack: string; layers: number[] }[]): (string | undefined)[] {
  const ks = [...new Set(windows.map((w) => w.layers.length))].sort((a, b) => a - b);
  const recorded = Array.isArray(info.windows) ? (info.windows as unknown[]) : [];
  const methods = [...new Set(recorded.map((w) => (typeof w === 'object' && w !== null ? (w as Record<string, unknown>).method : undefined)).filter((m): m is string => typeof m === 'string'))];
  const one = windows.filter((w) => w.stack === windows[0]?.stack).map((w) => w.layers.length);
  const k = ks.length > 1 ? `k = ${ks.join(', ')}` : typeof info.k === 'number' ? kLabel(info.k, one) : info.k !== undefined ? `k = ${String(info.k)}` : undefined;
  const method = methods.length > 1 ? `methods ${methods.join(', ')}` : info.method !== undefined ? `method ${String(info.method)}` : undefined;
  return [k, method];
}

/** One line on what an ffmerge output already merged: config.json's `ffmerge` record, checked against the tie map. */
function compressedText(info: Record<string, unknown>, s: ModelSummary): string {
  const merges = s.merges ?? { windows: [], inconsistent: [] };
  // every merge the model carries (a model compressed twice lists both): k layers sharing one FF drop k − 1 copies
  const removed = merges.windows.reduce((n, w) => {
    const st = s.stacks.find((x) => x.name === w.stack);
    return n + (st ? (w.layers.length - 1) * st.ffParamsPerLayer : 0);
  }, 0);
  const ties = typeof info.ties === 'object' && info.ties !== null ? Object.keys(info.ties).length : 0;
  const label = (w: { stack: string; window: string }) => `${w.stack} ${w.window}`;
  const untied = merges.inconsistent.filter((w) => w.found === 'not tied');
  const differ = merges.inconsistent.filter((w) => w.found === 'copies differ');
  // every run the weights went through, its source's before a later merge included (trainingRuns)
  const runs = trainingRuns(info).length;
  const tuned = runs ? `fine-tuned by ffmerge${runs > 1 ? ` (${runs} runs)` : ''}${Object.hasOwn(info, 'finetune') ? '' : ' before its last merge'}` : undefined;
  // a model ffmerge only fine-tuned (saveTrained of a plain model) carries a record, but no merge
  if (!merges.windows.length && !merges.inconsistent.length && merges.problem === undefined && !Object.hasOwn(info, 'windows')) {
    return [tuned ?? 'written by ffmerge', 'nothing merged'].join(', ');
  }
  const parts = [
    `already compressed (${String(info.format ?? 'tied')} format)`,
    tuned,
    ...kAndMethod(info, merges.windows),
    merges.windows.length ? `windows ${merges.windows.map((w) => label(w) + (w.unrecorded ? ' (tied in the checkpoint, not in its record)' : '')).join(', ')}` : undefined,
    ties ? `${ties} tensors tied (stored once, counted once above)` : undefined,
    removed ? `the merges remove ${fmtInt(removed)} FF params in the tied format` : undefined,
    untied.length
      ? `the record also lists ${untied.map(label).join(', ')}, which the tied checkpoint does not tie (the record and the tie map disagree; not counted)`
      : undefined,
    ...differ.map(
      (w) => `the record also lists ${label(w)}, whose copies differ: ${w.reason}; not counted (convert --format tied refuses the model, export writes that window unshared)`,
    ),
    merges.problem !== undefined ? `cannot read its merges: ${merges.problem}` : undefined,
  ];
  return parts.filter(Boolean).join(', ');
}

/** "2.4 MB", or for layers stored in different dtypes each run of them: "layers 0-5 F32 2.4 MB, 6-11 F16 1.2 MB". */
function ffBytesText(st: StackSummary): string {
  const bytes = st.ffBytesByLayer;
  const dtypes = st.ffDtypeByLayer;
  if (!bytes || !dtypes) return fmtBytes(st.ffBytesPerLayer);
  const runs: string[] = [];
  for (let a = 0; a < bytes.length; ) {
    let b = a;
    while (b + 1 < bytes.length && dtypes[b + 1] === dtypes[a] && bytes[b + 1] === bytes[a]) b++;
    runs.push(`${a === b ? a : `${a}-${b}`} ${dtypes[a]} ${fmtBytes(bytes[a]!)}`);
    a = b + 1;
  }
  return `layers ${runs.join(', ')}; a window merges layers stored alike`;
}

/** "dtype        F32", or for a checkpoint stored in several dtypes each with its parameters: "dtypes       F32 1,200 params, F16 800 params". */
function dtypesText(dtypes: Record<string, number>): string {
  const all = Object.entries(dtypes);
  if (all.length <= 1) return `dtype        ${all[0]?.[0] ?? 'none (no tensors)'}`;
  return `dtypes       ${all.map(([d, n]) => `${d} ${fmtInt(n)} params`).join(', ')}`;
}

export function formatSummary(s: ModelSummary): string {
  const lines = [
    `model        ${s.dir}`,
    `architecture ${s.architectures.join(', ') || s.modelType} (model_type ${s.modelType})`,
    ...s.stacks.map(
      (st) => `${st.name.padEnd(12)} ${counted(st.layers, 'layer')}, FF sublayer ${fmtInt(st.ffParamsPerLayer)} params (${ffBytesText(st)})`,
    ),
    `parameters   ${fmtInt(s.totalParams)} stored (${fmtBytes(s.totalBytes)}); FF sublayers ${fmtInt(s.ffParams)} = ${fmtPct(s.ffShare)}`,
    dtypesText(s.dtypes),
  ];
  if (s.ffmerge || s.merges?.windows.length) lines.push(`ffmerge      ${compressedText(s.ffmerge ?? {}, s)}`);
  const merged = s.stacks.filter((st) => st.mergedLayers !== undefined);
  if (merged.length === 0) {
    lines.push('', 'merging k adjacent FF sublayers into one removes:');
  } else {
    // a compressed model: only windows of layers not merged yet can be merged (what compress accepts)
    const free = merged.map((st) => {
      const layers = Array.from({ length: st.layers }, (_, l) => l).filter((l) => !st.mergedLayers!.includes(l));
      return `${st.name} ${layers.length ? `layer${layers.length > 1 ? 's' : ''} ${layers.join(', ')}` : 'none'}${st.maxK ? `, k up to ${st.maxK}` : ', no window left'}`;
    });
    lines.push('', `merging k adjacent FF sublayers not merged yet (free: ${free.join('; ')}) into one removes:`);
  }
  if (s.savings.length === 0) {
    lines.push(
      merged.length
        ? 'nothing: every window of 2 adjacent layers takes in a merged layer (compress the original model with a larger k instead)'
        : 'nothing: a stack has fewer than 2 layers',
    );
  } else {
    const marked = s.savings.some((v) => v.stacks);
    lines.push(
      table(
        ['k', 'params removed', 'bytes removed', 'of total', ...(marked ? [''] : [])],
        s.savings.map((v) => [v.stacks ? `${v.k}*` : v.k, fmtInt(v.paramsRemoved), v.bytesRemovedMax !== undefined ? `${fmtBytes(v.bytesRemoved)}–${fmtBytes(v.bytesRemovedMax)}` : fmtBytes(v.bytesRemoved), fmtPct(v.fraction), ...(marked ? [v.stacks ? `only with --stacks ${v.stacks}` : ''] : [])]),
      ),
    );
    if (marked) {
      lines.push('* no window of k layers is free at the same place in every stack, which the default (--stacks both-same) merges');
    }
    if (s.tiedParams !== undefined) {
      lines.push(`"of total" is of its tied form, ${fmtInt(s.tiedParams)} params (this expanded output stores each merge's copies; compress counts from the tied form too)`);
    }
  }
  return lines.join('\n');
}

export async function runInspect(modelArg: string | undefined, o: { json?: boolean }, signal: AbortSignal): Promise<void> {
  // as compress: no model is the bundled one, so the README's first look works before any download
  const model = modelOrBundled(modelArg);
  // comparing an expanded output's copies reads every merged tensor: shown, and stopped by Ctrl-C
  const bar = new ProgressBar(!o.json);
  const s = await bar.watch(inspectModel(model, { signal, onProgress: bar.update }));
  bar.done();
  printResult(o.json, s, () => formatSummary(s));
}
