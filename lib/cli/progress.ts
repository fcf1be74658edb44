/**
 * Progress on stderr for people, drawn with cli-progress: one bar per phase, named in the user's words, with
 * counts and ETA, redrawn in place; a finished phase leaves one clean line ("✔ Searching windows  9/9
 * candidates  3.1 s"). Off a TTY (a CI log, `2> file`) or with TERM=dumb the same lines are written plainly, no
 * cursor control, one every 10 s per phase, so a run of hours shows it is alive without flooding the log;
 * FFMERGE_PROGRESS=0 turns progress off, FFMERGE_PROGRESS=1 writes a plain line every second. --json gets none.
 *
 * The library reports every step it takes, down to native jobs (`correlation.finalize`, `assignment`, …);
 * only the pipeline's phases below are shown, the rest are details of the current bar.
 */
import { Format, SingleBar } from 'cli-progress';
import type { PipelinePhase, Progress } from '../native/job';
import { minutesAndSeconds } from './format';

interface PhaseLabel {
  title: string;
  unit: string;
  /** How a raw count reads (bytes → MB). */
  scale?: (n: number) => string;
}

const bytes = (n: number) => (n < 1e6 ? `${n < 1e4 ? (n / 1e3).toFixed(1) : Math.round(n / 1e3)} kB` : `${(n / 1e6).toFixed(1)} MB`);

/** The phases compress, eval, export and finetune report (lib/pipeline/compress.ts, tasks, eval), in words a user knows. */
const PHASES: Readonly<Record<PipelinePhase, PhaseLabel>> = {
  load: { title: 'Loading the weights', unit: 'of tensor data', scale: bytes },
  inspect: { title: 'Comparing merged copies', unit: 'tensors' },
  tokenize: { title: 'Reading data', unit: '', scale: bytes },
  images: { title: 'Reading images', unit: 'images' },
  sample: { title: 'Sampling calibration text from the model', unit: 'tokens' },
  // steps: a layer's pass over one batch, and each layer pair's correlations (or alignment) once its last batch is in
  features: { title: 'Calibrating (FF activations)', unit: 'steps' },
  prefix: { title: 'Caching base model states', unit: 'batches' },
  validate: { title: 'Validating the base model', unit: 'batches' },
  'validate-merged': { title: 'Validating the merged model', unit: 'batches' },
  search: { title: 'Searching windows', unit: 'candidates' },
  merge: { title: 'Merging (windows given)', unit: 'candidates' },
  baselines: { title: 'Scoring baselines', unit: 'candidates' },
  test: { title: 'Test set', unit: 'batches' },
  // tensor data only, and said so: the files' size, headers included, is the summary's
  save: { title: 'Saving the weights', unit: 'of tensor data', scale: bytes },
  onnx: { title: 'Writing ONNX', unit: 'tensors' },
  evaluate: { title: 'Evaluating', unit: 'batches' },
  perplexity: { title: 'Evaluating', unit: 'tokens' },
  translate: { title: 'Translating', unit: 'sentences' },
  finetune: { title: 'Fine-tuning', unit: 'steps' },
};

interface LinePayload {
  title: string;
  unit: string;
  shown: string;
  shownTotal: string;
  detail: string;
}

const TITLE_WIDTH = 30;
const BAR_WIDTH = 24;

/**
 * The live line fitted to the terminal: the count, the ETA and the detail (finetune's loss) are kept, and the
 * bar (24 columns, down to 8, then none) and the titles' alignment give way; the last column stays free.
 * `held.tail` is the longest tail of the phase so far, so the bar does not come and go as details vary in length.
 */
function fitLine(width: number, bar: (size: number) => string, p: LinePayload, eta: string, held: { tail: number }): string {
  const tail = ` ${p.shown}/${p.shownTotal}${p.unit ? ` ${p.unit}` : ''}  ETA ${eta}${p.detail ? `  ${p.detail}` : ''}`;
  held.tail = Math.max(held.tail, tail.length);
  const room = width - 1 - 2 - p.title.length - held.tail;
  const size = Math.min(BAR_WIDTH, room - 1);
  const drawn = size >= 8 ? ` ${bar(size)}` : '';
  const pad = Math.max(0, Math.min(TITLE_WIDTH - p.title.length, room - drawn.length));
  return `  ${p.title}${' '.repeat(pad)}${drawn}${tail}`;
}

/** A count of one reads in the singular ("1 batch"). */
const SINGULAR: Readonly<Record<string, string>> = { batches: 'batch', candidates: 'candidate', images: 'image', tokens: 'token', sentences: 'sentence', steps: 'step', tensors: 'tensor', windows: 'window' };

/** The count with the share of the next unit done (Progress.within), for the time left. */
const progressOf = (p: Progress) => p.done + (typeof p.within === 'number' && p.within > 0 && p.within < 1 ? p.within : 0);

const fmtSeconds = (s: number) => (s < 59.95 ? `${s.toFixed(1)} s` : minutesAndSeconds(s));

/**
 * A progress callback that holds the weights' read (phase 'load') back for its first `quietMs`: a command
 * checks its data after loading the model, and a refusal there is meant to be its only line. A small model's
 * load is shown, if at all, just before the next phase; a large one's as it goes once `quietMs` has passed.
 */
export function holdingLoad(show: (p: Progress) => void, quietMs = 1000, now: () => number = () => performance.now()): (p: Progress) => void {
  let held: Progress | undefined;
  let from: number | undefined;
  let shown = false;
  return (p) => {
    if (p.phase === 'load' && !shown) {
      from ??= now();
      if (now() - from < quietMs) {
        held = p;
        return;
      }
    }
    if (held && p.phase !== 'load') show(held);
    held = undefined;
    shown = true;
    show(p);
  };
}

export class ProgressBar {
  private readonly enabled: boolean;
  private bar: SingleBar | undefined;
  private phase: PipelinePhase | '' = '';
  private started = 0;
  /** When the phase's count reached its total: its summary's time ends there, not at the next phase's start. */
  private completedAt: number | undefined;
  private last: Progress | undefined;
  /** The running phase's unit: the one its reports name (`unit`), else the phase's usual one. */
  private unit = '';

  /** Whether the bar is redrawn in place (a TTY that understands cursor control), else plain lines. */
  private readonly live: boolean;
  /** Milliseconds between plain lines (off a TTY). */
  private readonly every: number;
  private lastLine = 0;
  /** Off a TTY, a timer that writes the line when no report came for `every` ms (a slow candidate); unref'd. */
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(enabled: boolean, private readonly stream: NodeJS.WriteStream = process.stderr) {
    const env = process.env.FFMERGE_PROGRESS;
    this.enabled = enabled && env !== '0';
    this.live = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
    this.every = env === '1' ? 1000 : 10_000;
  }

  update = (p: Progress): void => {
    if (!this.enabled) return;
    if (!Object.hasOwn(PHASES, p.phase)) return; // a step inside the current phase
    const phase = p.phase as PipelinePhase;
    const label = PHASES[phase];
    // A count that goes back is the phase's next piece of work (finetune reads --data, then --valid): the piece
    // before it gets its own summary line
    const first = phase !== this.phase || p.done < (this.last?.done ?? 0);
    if (first) {
      this.finishPhase();
      this.phase = phase;
      // One phase name can count different things ('evaluate': batches of text or images; compress's 'test' and
      // 'validate' count what their task's evaluation counts): a unit the report names is believed over the usual
      this.unit = typeof p.unit === 'string' ? p.unit : label.unit;
      this.started = performance.now();
      this.completedAt = undefined;
      this.lastLine = this.started;
      this.last = p;
      if (!this.live) {
        // plain lines: the first after `every`, then every `every` while the phase runs, then its summary
        this.stopHeartbeat();
        this.heartbeat = setInterval(() => this.plainDue(performance.now()), Math.min(this.every, 1000));
        this.heartbeat.unref();
        return;
      }
      const held = { tail: 0 };
      this.bar = new SingleBar({
        stream: this.stream,
        format: (options, params, payload: LinePayload) =>
          fitLine(params.maxWidth, (barsize) => Format.BarFormat(params.progress, { ...options, barsize }), payload, options.formatTime!(params.eta, options, 5), held),
        barsize: BAR_WIDTH,
        hideCursor: false,
        clearOnComplete: true,
        stopOnComplete: false,
        gracefulExit: false, // Ctrl-C is the CLI's: it aborts the job and interrupt() clears the bar
        etaBuffer: 20,
        fps: 10,
        noTTYOutput: false,
        linewrap: false,
        // before the first unit is done there is no rate: cli-progress writes 'NULL' (cut to "ETA LLs" on a
        // narrow line), and 'INF' for a stalled one; both read as "not known yet"
        formatTime: (t, o, round) => (typeof t === 'number' ? Format.TimeFormat(t, o, round) : '…'),
      });
      this.bar.start(Math.max(1, p.total), 0, this.payload(p, label));
    }
    this.last = p;
    // (a phase whose first report is already its last has no measured end: its time runs to the next phase's)
    if (!first) this.completedAt = p.total > 0 && p.done >= p.total ? (this.completedAt ?? performance.now()) : undefined;
    if (!this.live) {
      this.plainDue(performance.now());
      return;
    }
    this.bar!.setTotal(Math.max(1, p.total));
    this.bar!.update(Math.min(progressOf(p), Math.max(1, p.total)), this.payload(p, label));
  };

  /** Off a TTY: the running phase's line, if `every` ms have passed since the last one and it has not finished. */
  private plainDue(now: number): void {
    const { phase, last } = this;
    // a finished count is not repeated as if running
    if (!phase || !last || this.completedAt !== undefined || (last.total > 0 && last.done >= last.total) || now - this.lastLine < this.every) return;
    this.lastLine = now;
    this.stream.write(`  ${this.plainLine(last, PHASES[phase], now)}\n`);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** "Calibrating (FF activations)  12/40 steps  1 min 3 s, about 2 min 27 s left" (no cursor control). */
  private plainLine(p: Progress, label: PhaseLabel, now: number): string {
    const { title, unit, shown, shownTotal, detail } = this.payload(p, label);
    const elapsed = (now - this.started) / 1000;
    const done = progressOf(p);
    const left = p.total > 0 && done > 0 && done < p.total ? `, about ${fmtSeconds((elapsed * (p.total - done)) / done)} left` : '';
    return `${title.padEnd(TITLE_WIDTH)} ${shown}/${shownTotal}${unit ? ` ${unit}` : ''}  ${detail ? `${detail}  ` : ''}${fmtSeconds(elapsed)}${left}`;
  }

  /** The phase's usual scale (bytes → kB), unless the report named its own unit (ONNX saves count tensors). */
  private show(label: PhaseLabel): (n: number) => string {
    return (this.unit === label.unit && label.scale) || ((n: number) => String(Math.round(n)));
  }

  private payload(p: Progress, label: PhaseLabel): LinePayload {
    const show = this.show(label);
    return { title: label.title, unit: this.unit, shown: show(p.done), shownTotal: p.total > 0 ? show(p.total) : '?', detail: p.detail ?? '' };
  }

  /** Replaces the running bar with its phase's one-line summary. */
  private finishPhase(): void {
    this.stopHeartbeat();
    if (!this.phase || !this.last) return;
    this.bar?.stop();
    const label = PHASES[this.phase];
    const show = this.show(label);
    const { done, total } = this.last;
    const count = total > 0 && done !== total ? `${show(done)}/${show(total)}` : show(done);
    const unit = done === 1 && total <= 1 ? (SINGULAR[this.unit] ?? this.unit) : this.unit;
    this.stream.write(`✔ ${label.title.padEnd(TITLE_WIDTH)} ${count}${unit ? ` ${unit}` : ''}  ${fmtSeconds(((this.completedAt ?? performance.now()) - this.started) / 1000)}\n`);
    this.bar = undefined;
    this.phase = '';
  }

  /** The job finished: the last phase gets its summary line. */
  done(): void {
    if (this.enabled) this.finishPhase();
  }

  /** `p`, with the bar interrupted if it rejects. */
  watch<T>(p: Promise<T>): Promise<T> {
    return p.catch((e: unknown) => {
      this.interrupt();
      throw e;
    });
  }

  /** Ctrl-C or an error: the bar is cleared (not summarised) so the message that follows starts on its own line. */
  interrupt(): void {
    if (!this.enabled) return;
    this.stopHeartbeat();
    this.bar?.stop(); // clearOnComplete: the bar line is erased and the cursor is at column 0
    this.bar = undefined;
    this.phase = '';
  }
}
