/** The human summary of a compress run (report.json holds the same numbers). */
import { calibrationUsed, type CompressResult } from '../pipeline/result';
import { kLabel } from '../merge/windows';
import { fmtBytes, fmtInt, fmtPct, fmtSeconds, table } from './format';
import { metricLabel } from '../pipeline/model-card';

/** A candidate's windows; each named by its stack on a model with two (independent runs list one stack per candidate). */
function windowsText(w: Partial<Record<string, string>>, multi: boolean): string {
  const entries = Object.entries(w);
  return entries.length === 1 && !multi ? entries[0]![1]! : entries.map(([s, x]) => `${s} ${x}`).join(' + ');
}

/** The merged row's layers, named by stack as the baselines' rows are where the model has two. */
function mergedLayers(r: CompressResult, multi: boolean): string {
  if (!multi) return r.windows.map((x) => x.window).join(', ');
  const stacks = [...new Set(r.windows.map((x) => x.stack))];
  return windowsText(Object.fromEntries(stacks.map((s) => [s, r.windows.filter((x) => x.stack === s).map((x) => x.window).join(',')])), multi);
}

export function formatReport(r: CompressResult): string {
  const fmt = (v: number | undefined) => (v === undefined ? '-' : r.metric.name === 'accuracy' ? `${(100 * v).toFixed(2)}%` : v.toFixed(r.metric.name === 'bleu' ? 2 : 3));
  const d = r.data;
  const multi = Object.keys(r.layers).length > 1;
  const lines: string[] = [];
  const layers = Object.values(r.layers).reduce((a, b) => a + b, 0);
  const stacks = Object.entries(r.layers).map(([s, n]) => `${n} ${s}`).join(' + ');
  lines.push(`model     ${r.model} (${r.modelType}, ${stacks} ${layers === 1 ? 'layer' : 'layers'}, ${r.task})`);
  lines.push(
    `merged    ${kLabel(r.k, r.windows.filter((w) => w.stack === r.windows[0]?.stack).map((w) => w.layers.length))}, method ${r.method}, recover ${r.recover}${multi ? `, stacks ${r.stacks}` : ''}, window ` +
      r.windows.map((x) => `${multi ? `${x.stack} ` : ''}${x.window}${x.anchor !== undefined ? ` (anchor ${x.anchor})` : ''}`).join(', '),
  );
  lines.push(
    `removed   ${fmtInt(r.params.removed)} of ${fmtInt(r.params.before)} parameters (${fmtPct(r.params.fraction)}), ` +
      // bytes are counted in the tied form whatever was written: an expanded or ONNX output is another size
      `${fmtBytes(r.bytes.removed)} of ${fmtBytes(r.bytes.before)} (${fmtPct(r.bytes.fraction)}) in the tied ${r.out && r.out.format !== 'tied' ? 'form' : 'checkpoint'}`,
  );
  lines.push(`data      calibration ${calibrationUsed(r) ? `${fmtInt(d.calibration)} ${d.unit}` : 'not used'}, validation ${fmtInt(d.validation)}${d.search !== d.validation ? ` (search ${fmtInt(d.search)})` : ''}${d.test !== undefined ? `, test ${fmtInt(d.test)}` : ''}`);
  for (const n of d.notes) lines.push(`          ${n}`);
  const rows: string[][] = [['base', fmt(r.base.validation), fmt(r.base.test), '']];
  rows.push([`merged (${r.method}${r.recover !== 'none' ? ` + ${r.recover}` : ''})`, fmt(r.merged.validation), fmt(r.merged.test), mergedLayers(r, multi)]);
  for (const [name, b] of Object.entries(r.baselines)) {
    rows.push([`${name} (${fmtInt(b.paramsRemoved)} params)`, fmt(b.validation), fmt(b.test), windowsText(b.windows, multi)]);
  }
  lines.push('', `${metricLabel(r.metric)}, ${r.metric.higherIsBetter ? 'higher' : 'lower'} is better:`);
  lines.push(table(['model', 'validation', 'test', 'layers'], rows));
  // candidates ranked by the selection score (e.g. validation loss) when there is one, else by the metric
  const scoreName = r.selection ? `validation ${r.selection.name} (lower is better)` : metricLabel(r.metric);
  const fmtScore = r.selection ? (v: number) => v.toFixed(5) : fmt;
  if (r.candidates.length > 0) {
    const chosen = new Set(r.windows.map((x) => `${x.stack}:${x.window}:${x.method}+${x.recover}`));
    // a candidate's windows per stack are "a-b" or, for pairs merged together, "a-b,c-d": chosen when every
    // one of them is a chosen window, and it names all the chosen windows of its stacks (a lone pair of a
    // chosen set of pairs is not the model kept)
    const isChosen = (c: (typeof r.candidates)[number]) =>
      Object.entries(c.windows).every(([s, x]) => {
        const ws = (x ?? '').split(',');
        return ws.length === r.windows.filter((w) => w.stack === s).length && ws.every((w) => [...chosen].some((k) => k.startsWith(`${s}:${w}:`) && (c.method === undefined || k.endsWith(`:${c.method}`))));
      });
    const methods = r.candidates.some((c) => c.method !== undefined);
    lines.push('', `window search (${fmtInt(d.search)} validation ${d.unit} per candidate):`);
    lines.push(
      table(
        ['window', ...(methods ? ['method'] : []), scoreName, ''],
        r.candidates.map((c) => [windowsText(c.windows, multi), ...(methods ? [c.method ?? ''] : []), fmtScore(c.score), isChosen(c) ? '← chosen' : '']),
      ),
    );
  }
  // each baseline's own search, on the same validation data: every candidate's score, as report.json has it
  const searched = Object.entries(r.baselines).filter(([, b]) => b.candidates.length > 0);
  if (searched.length > 0) {
    lines.push('', `baseline search (${fmtInt(d.search)} validation ${d.unit} per candidate):`);
    lines.push(
      table(
        ['baseline', 'layers', scoreName, ''],
        // chosen where each stack it names holds the placement kept there (--stacks independent searches the
        // stacks one by one: a candidate names one, the kept placement both)
        searched.flatMap(([name, b]) => b.candidates.map((c) => [name, windowsText(c.windows, multi), fmtScore(c.score), Object.entries(c.windows).every(([st, x]) => b.windows[st as keyof typeof b.windows] === x) ? '← chosen' : ''])),
      ),
    );
  }
  lines.push('', 'time per phase:');
  lines.push(table(['phase', 'time'], Object.entries(r.timings).map(([p, s]) => [p, fmtSeconds(s)])));
  if (r.out) lines.push('', `wrote ${r.out.format} checkpoint ${r.out.dir} (${fmtBytes(r.out.bytes)} of files), report.json inside`);
  return lines.join('\n');
}
