/**
 * A one-line progress bar on stderr, drawn only on a TTY (scripts and --json get nothing). Redraws at most
 * every 100 ms; each phase gets its own line.
 */
import type { Progress } from '../native/job';

export class ProgressBar {
  private phase = '';
  private last = 0;
  private readonly enabled: boolean;

  constructor(enabled: boolean, private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.enabled = enabled && Boolean(stream.isTTY);
  }

  update = (p: Progress): void => {
    if (!this.enabled) return;
    const now = Date.now();
    if (p.phase !== this.phase) {
      if (this.phase) this.stream.write('\n');
      this.phase = p.phase;
      this.last = 0;
    }
    if (now - this.last < 100 && p.done < p.total) return;
    this.last = now;
    const width = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - 40));
    const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
    const fill = Math.round(frac * width);
    const bar = '█'.repeat(fill) + '░'.repeat(width - fill);
    this.stream.write(`\r${p.phase.padEnd(14)} ${bar} ${(100 * frac).toFixed(0).padStart(3)}%`);
  };

  done(): void {
    if (this.enabled && this.phase) this.stream.write('\n');
    this.phase = '';
  }
}
