/** Small formatting helpers for the CLI's human output. */
import { groupDigits } from '../errors';

/** A command's result on stdout: `{ ok: true, …result }` with --json, else its text for people. */
export function printResult(json: boolean | undefined, result: object, text: () => string): void {
  process.stdout.write((json ? JSON.stringify({ ok: true, ...result }, null, 2) : text()) + '\n');
}

export const fmtInt = groupDigits;

export function fmtBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}

export function fmtPct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

export function fmtSeconds(s: number): string {
  // the bounds where rounding reaches the next form: 9.996 s is "10.0 s", not "10.00 s"
  return s < 9.995 ? `${s.toFixed(2)} s` : s < 119.95 ? `${s.toFixed(1)} s` : minutesAndSeconds(s);
}

/** "2 min 5 s": rounded to the second first, so 179.6 s is "3 min 0 s", never "2 min 60 s". */
export function minutesAndSeconds(s: number): string {
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

/** A plain text table: columns padded to their widest cell, numbers right-aligned. */
export function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const numeric = head.map((_, c) => rows.every((r) => typeof r[c] === 'number' || /^[-+]?[\d.,]+%?$/.test(String(r[c] ?? ''))));
  return cells
    .map((r) => r.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd())
    .join('\n');
}
