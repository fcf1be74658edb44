/** The human summary of a compress run (the CLI prints it; report.json holds the same numbers). */
import { fmtBytes, fmtInt, fmtPct, fmtSeconds, table } from '../cli/format';
import type { CompressResult } from './compress';
import type { ModalityCompressResult } from './modalities';

export function formatReport(r: CompressResult): string {
  const lines: string[] = [];
  const w = r.windows.map((x) => `${x.window} (anchor ${x.anchor})`).join(', ');
  lines.push(`model     ${r.model} (${r.modelType}, ${r.layers} layers)`);
  lines.push(`merged    k = ${r.k}, method ${r.method}, recover ${r.recover}, window ${w}`);
  lines.push(
    `removed   ${fmtInt(r.params.removed)} of ${fmtInt(r.params.before)} parameters (${fmtPct(r.params.fraction)}), ` +
      `${fmtBytes(r.bytes.removed)} of ${fmtBytes(r.bytes.before)} (${fmtPct(r.bytes.fraction)}) in the tied checkpoint`,
  );
  const rows: (string | number)[][] = [['base', r.base.validation.toFixed(3), r.base.test?.toFixed(3) ?? '-']];
  rows.push([`merged (${r.method}${r.recover !== 'none' ? ` + ${r.recover}` : ''})`, r.merged.validation.toFixed(3), r.merged.test?.toFixed(3) ?? '-']);
  for (const [name, m] of Object.entries(r.baselines)) rows.push([`${name} (same size)`, m.validation.toFixed(3), m.test?.toFixed(3) ?? '-']);
  lines.push('', `perplexity (validation ${fmtInt(r.data.validationTokens)} tokens${r.data.testTokens ? `, test ${fmtInt(r.data.testTokens)} tokens` : ''}):`);
  lines.push(table(['model', 'validation', 'test'], rows));
  if (r.candidates.length > 1) {
    const best = r.windows[0]?.window;
    lines.push('', `window search (${fmtInt(r.candidates[0]!.tokens)} validation tokens per candidate):`);
    lines.push(table(['window', 'perplexity', ''], r.candidates.map((c) => [c.window, c.ppl.toFixed(3), c.window === best ? '← chosen' : ''])));
  }
  lines.push('', 'time per phase:');
  lines.push(table(['phase', 'time'], Object.entries(r.timings).map(([p, s]) => [p, fmtSeconds(s)])));
  if (r.out) lines.push('', `wrote ${r.out.format} checkpoint ${r.out.dir} (${fmtBytes(r.out.bytes)}), report.json beside it`);
  return lines.join('\n');
}

/** The summary of an image or translation run: the task's metric (higher is better) instead of perplexity. */
export function formatModalityReport(r: ModalityCompressResult): string {
  const lines: string[] = [];
  const layers = Object.entries(r.layers).map(([s, n]) => `${n} ${s}`).join(' + ');
  const w = r.windows.map((x) => `${x.stack} ${x.window} (anchor ${x.anchor})`).join(', ');
  const fmt = (v: number | undefined) => (v === undefined ? '-' : r.metric.name === 'accuracy' ? `${(100 * v).toFixed(2)}%` : v.toFixed(2));
  const name = r.metric.name === 'accuracy' ? 'top-1 accuracy' : 'greedy BLEU';
  lines.push(`model     ${r.model} (${r.modelType}, ${layers} layers)`);
  lines.push(`merged    k = ${r.k}, method ${r.method}, stacks ${r.stacks}, window ${w}`);
  lines.push(
    `removed   ${fmtInt(r.params.removed)} of ${fmtInt(r.params.before)} parameters (${fmtPct(r.params.fraction)}), ` +
      `${fmtBytes(r.bytes.removed)} of ${fmtBytes(r.bytes.before)} (${fmtPct(r.bytes.fraction)}) in the tied checkpoint`,
  );
  lines.push('', `${name}, higher is better (validation ${fmtInt(r.data.validation)} ${r.data.unit}${r.data.test ? `, test ${fmtInt(r.data.test)} ${r.data.unit}` : ''}):`);
  lines.push(
    table(
      ['model', 'validation', 'test'],
      [
        ['base', fmt(r.base.validation), fmt(r.base.test)],
        [`merged (${r.method})`, fmt(r.merged.validation), fmt(r.merged.test)],
      ],
    ),
  );
  if (r.candidates.length > 0) {
    const chosen = (c: ModalityCompressResult['candidates'][number]) => Object.entries(c.windows).every(([s, win]) => r.windows.some((x) => x.stack === s && x.window === win));
    lines.push('', `window search (${fmtInt(r.data.validation)} validation ${r.data.unit} per candidate):`);
    lines.push(
      table(
        ['window', name, ''],
        r.candidates.map((c) => [Object.entries(c.windows).map(([s, win]) => `${s} ${win}`).join(' + '), fmt(c.score), chosen(c) ? '← chosen' : '']),
      ),
    );
  }
  lines.push('', 'time per phase:');
  lines.push(table(['phase', 'time'], Object.entries(r.timings).map(([p, s]) => [p, fmtSeconds(s)])));
  if (r.out) lines.push('', `wrote ${r.out.format} checkpoint ${r.out.dir} (${fmtBytes(r.out.bytes)}), report.json beside it`);
  return lines.join('\n');
}
