/** The human summary of a compress run (the CLI prints it; report.json holds the same numbers). */
import { fmtBytes, fmtInt, fmtPct, fmtSeconds, table } from '../cli/format';
import type { CompressResult } from './compress';

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
