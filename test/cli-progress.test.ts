/**
 * The CLI's progress display (lib/cli/progress.ts) on a terminal: what a user sees after the escape codes are
 * applied, replayed by a small terminal model.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { holdingLoad, ProgressBar } from '../lib/cli/progress';
import { fmtSeconds, minutesAndSeconds } from '../lib/cli/format';
import { runEval } from '../lib/cli/eval';
import { runExport } from '../lib/cli/export';
import { runningCount, type Progress } from '../lib/native/job';

/** Applies what cli-progress writes (CR, LF, ESC[nG, ESC[K / ESC[2K, save/restore cursor) to a grid of lines. */
class FakeTerminal {
  isTTY = true;
  columns = 120;
  raw = '';
  private lines: string[] = [''];
  private row = 0;
  private col = 0;
  private saved: [number, number] = [0, 0];

  write = (s: string): boolean => {
    this.raw += s;
    for (let i = 0; i < s.length; i++) {
      const ch = s[i]!;
      if (ch === '\x1b') {
        const m = /^\x1b(?:\[(\??)(\d*)([A-Za-z])|([78]))/.exec(s.slice(i))!;
        i += m[0].length - 1;
        if (m[4] === '7') this.saved = [this.row, this.col];
        else if (m[4] === '8') [this.row, this.col] = this.saved;
        else if (m[1] === '' && m[3] === 'G') this.col = Number(m[2] || 1) - 1;
        else if (m[1] === '' && m[3] === 'K') this.lines[this.row] = m[2] === '2' ? '' : this.lines[this.row]!.slice(0, this.col);
        continue;
      }
      if (ch === '\n') {
        this.row++;
        this.col = 0;
        this.lines[this.row] ??= '';
      } else if (ch === '\r') {
        this.col = 0;
      } else {
        const line = this.lines[this.row]!.padEnd(this.col);
        this.lines[this.row] = line.slice(0, this.col) + ch + line.slice(this.col + 1);
        this.col++;
      }
    }
    return true;
  };
  on() {
    return this;
  }
  removeListener() {
    return this;
  }
  screen(): string[] {
    return this.lines.map((l) => l.trimEnd());
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('CLI progress bars', () => {
  // a bar is drawn in place on a terminal that understands cursor control: not under TERM=dumb, whatever the
  // environment running the tests says
  const term0 = process.env.TERM;
  beforeAll(() => {
    process.env.TERM = 'xterm';
  });
  afterAll(() => {
    if (term0 === undefined) delete process.env.TERM;
    else process.env.TERM = term0;
  });
  it('one bar per phase in user words, counts and ETA, redrawn in place; a clean line per finished phase; inner steps hidden', async () => {
    const term = new FakeTerminal();
    const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
    for (let i = 1; i <= 3; i++) {
      bar.update({ phase: 'features', done: i, total: 3 });
      bar.update({ phase: 'forward', done: i, total: 3 }); // a native step inside the phase
      await sleep(120);
    }
    for (let i = 1; i <= 9; i++) {
      bar.update({ phase: 'correlation.finalize', done: 1, total: 1 });
      bar.update({ phase: 'search', done: i, total: 9 });
      await sleep(120);
      if (i === 5) {
        const live = term.screen().at(-1)!;
        expect(live).toMatch(/Searching windows .* 5\/9 candidates +ETA \d+s/);
      }
    }
    bar.update({ phase: 'test', done: 2, total: 4 });
    await sleep(120);
    bar.update({ phase: 'test', done: 4, total: 4 });
    bar.done();

    const screen = term.screen().filter((l) => l !== '');
    expect(screen).toHaveLength(3);
    expect(screen[0]).toMatch(/^✔ Calibrating \(FF activations\) +3 steps +\d+\.\d s$/);
    expect(screen[1]).toMatch(/^✔ Searching windows +9 candidates +\d+\.\d s$/);
    expect(screen[2]).toMatch(/^✔ Test set +4 batches +\d+\.\d s$/);
    // redrawn in place: the only line feeds are the finished phases' lines
    expect(term.raw.split('\n').length - 1).toBe(3);
    expect(term.raw).not.toMatch(/correlation|forward/);
  });

  it('Ctrl-C: the bar is cleared, so the abort message starts on a line of its own', async () => {
    const term = new FakeTerminal();
    const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
    bar.update({ phase: 'features', done: 1, total: 3 });
    await sleep(120);
    bar.update({ phase: 'features', done: 2, total: 3 });
    await sleep(120);
    expect(term.screen().at(-1)).toMatch(/Calibrating/);
    bar.interrupt();
    term.write('ffmerge: aborted [ABORTED]\n');
    expect(term.screen().filter((l) => l !== '')).toEqual(['ffmerge: aborted [ABORTED]']);
  });

  it('a live line fits the terminal: the count, the ETA and the detail stay, the bar and the alignment give way', async () => {
    // at 80 columns the fixed layout (about 105) cut off the ETA and finetune's loss (tester CC)
    for (const columns of [120, 80, 60, 40]) {
      const term = new FakeTerminal();
      term.columns = columns;
      const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
      try {
        bar.update({ phase: 'search', done: 5, total: 33, detail: 'decoder 1-2 permute+refit' });
        await sleep(120);
        bar.update({ phase: 'search', done: 6, total: 33, detail: 'decoder 1-2 permute+refit' });
        await sleep(120);
        const live = term.screen().at(-1)!;
        expect({ columns, live }).toEqual({ columns, live: expect.stringMatching(/^ {2}Searching windows\b.* 6\/33 candidates {2}ETA \S+ {2}decoder 1-2 permute\+refit$/) });
        // what a terminal of this width shows: the line whole from 80 columns; narrower, the count and the ETA
        // (at 40, the count)
        if (columns >= 80) expect(live.length).toBeLessThan(columns);
        expect(live.slice(0, columns - 1)).toMatch(columns >= 60 ? /6\/33 candidates {2}ETA \S+/ : /6\/33 candidates/);
        // a bar while there is room for one of at least 8 columns
        expect({ columns, bar: /[=-]{8,}/.test(live) }).toEqual({ columns, bar: columns >= 80 });
      } finally {
        bar.interrupt();
      }
    }
    // finetune's loss at 80 columns
    const term = new FakeTerminal();
    term.columns = 80;
    const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
    try {
      bar.update({ phase: 'finetune', done: 21, total: 400, detail: 'loss 4.333  3318 tok/s' });
      await sleep(120);
      const live = term.screen().at(-1)!;
      expect(live).toMatch(/ 21\/400 steps {2}ETA \S+ {2}loss 4\.333 {2}3318 tok\/s$/);
      expect(live.length).toBeLessThan(80);
    } finally {
      bar.interrupt();
    }
  });

  it('a count that goes back starts the next piece of a phase: each piece keeps its own closing line', () => {
    // tester DB: finetune read --data (5.9 MB) then --valid, and "Reading data 66 kB/600 kB" was all it showed
    const term = new FakeTerminal();
    const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
    bar.update({ phase: 'tokenize', done: 3e6, total: 5.9e6 });
    bar.update({ phase: 'tokenize', done: 5.9e6, total: 5.9e6 });
    bar.update({ phase: 'tokenize', done: 66e3, total: 600e3 });
    bar.done();
    expect(term.screen().filter((l) => l !== '').map((l) => l.replace(/ +\d+\.\d s$/, ''))).toEqual(['✔ Reading data                   5.9 MB', '✔ Reading data                   66 kB/600 kB']);
  });

  it('a count of one reads in the singular in a phase\'s closing line', () => {
    const term = new FakeTerminal();
    const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
    bar.update({ phase: 'validate', done: 1, total: 1 });
    bar.update({ phase: 'test', done: 2, total: 2 });
    bar.update({ phase: 'inspect', done: 1, total: 1 }); // tester EL: "1 windows"
    bar.done();
    expect(term.screen().filter((l) => l !== '').map((l) => l.replace(/ +\d+\.\d s$/, ''))).toEqual(['✔ Validating the base model      1 batch', '✔ Test set                       2 batches', '✔ Comparing merged copies        1 tensor']);
  });

  it('eval and export clear the bar before an error or abort line, as compress and finetune do', async () => {
    // an abort of `ffmerge eval` on a terminal printed its ABORTED line at the end of the bar's
    const interrupt = jest.spyOn(ProgressBar.prototype, 'interrupt');
    const bundled = path.resolve(__dirname, '..', 'models', 'llama-stories260k');
    const ac = new AbortController();
    ac.abort();
    const data = path.join(bundled, 'calibration.txt');
    await expect(runEval(bundled, { data }, ac.signal)).rejects.toMatchObject({ code: 'ABORTED' });
    expect(interrupt).toHaveBeenCalledTimes(1);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-bar-'));
    try {
      fs.writeFileSync(path.join(out, 'keep.txt'), 'not empty');
      await expect(runExport(bundled, { format: 'onnx', out, dtype: 'fp32', externalData: 'auto' }, new AbortController().signal)).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
      expect(interrupt).toHaveBeenCalledTimes(2);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
      interrupt.mockRestore();
    }
  });

  // Off a terminal (a CI log) there used to be no progress at all, for runs of hours (tester X): plain lines now,
  // one every 10 s per phase and each phase's closing line, never cursor control; none for --json or FFMERGE_PROGRESS=0.
  it('off a terminal: plain lines only, throttled, and the phase summaries; nothing with --json or FFMERGE_PROGRESS=0', () => {
    const term = new FakeTerminal();
    term.isTTY = false;
    const bar = new ProgressBar(true, term as unknown as NodeJS.WriteStream);
    for (let i = 1; i <= 50; i++) bar.update({ phase: 'features', done: i, total: 50 });
    bar.update({ phase: 'search', done: 1, total: 9 });
    bar.done();
    expect(term.raw).not.toMatch(/\r|\x1b/); // eslint-disable-line no-control-regex
    // 51 reports within 10 s: no periodic line yet, only the two phases' closing lines
    expect(term.raw.split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^✔ Calibrating \(FF activations\)\s+50 steps/), expect.stringMatching(/^✔ Searching windows\s+1\/9 candidates/)]);
    for (const [enabled, env] of [[false, undefined], [true, '0']] as const) {
      const quiet = new FakeTerminal();
      quiet.isTTY = false;
      const prev = process.env.FFMERGE_PROGRESS;
      if (env === undefined) delete process.env.FFMERGE_PROGRESS;
      else process.env.FFMERGE_PROGRESS = env;
      try {
        const b = new ProgressBar(enabled, quiet as unknown as NodeJS.WriteStream);
        b.update({ phase: 'features', done: 1, total: 3 });
        b.done();
      } finally {
        if (prev === undefined) delete process.env.FFMERGE_PROGRESS;
        else process.env.FFMERGE_PROGRESS = prev;
      }
      expect(quiet.raw).toBe('');
    }
  });

  /** A bar off a terminal whose clock is `tick(ms)`: the test moves time itself. */
  function plainBarWithClock(run: (bar: ProgressBar, tick: (ms: number) => void, term: FakeTerminal) => void): void {
    const term = new FakeTerminal();
    term.isTTY = false;
    let now = 1000;
    const spy = jest.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      run(new ProgressBar(true, term as unknown as NodeJS.WriteStream), (ms) => void (now += ms), term);
    } finally {
      spy.mockRestore();
    }
  }

  it('off a terminal, a long phase writes a line with its count and time left once 10 s have passed', () => {
    plainBarWithClock((bar, tick, term) => {
      bar.update({ phase: 'features', done: 0, total: 40 });
      tick(5_000);
      bar.update({ phase: 'features', done: 5, total: 40 });
      expect(term.raw).toBe('');
      tick(10_000);
      bar.update({ phase: 'features', done: 12, total: 40 });
      expect(term.raw).toBe('  Calibrating (FF activations)   12/40 steps  15.0 s, about 35.0 s left\n');
    });
  });

  it('off a terminal, a phase that reports nothing for 10 s still writes its line (a timer), and stops when it ends', () => {
    // tester EL: a search candidate of 74 s left a CI log without a line, as if hung
    jest.useFakeTimers({ doNotFake: ['performance'] });
    try {
      plainBarWithClock((bar, tick, term) => {
        const wait = (ms: number) => {
          for (let t = 0; t < ms; t += 500) {
            tick(500);
            jest.advanceTimersByTime(500);
          }
        };
        bar.update({ phase: 'search', done: 1, total: 39 });
        wait(9_000);
        expect(term.raw).toBe('');
        wait(1_500);
        expect(term.raw).toBe('  Searching windows              1/39 candidates  10.0 s, about 6 min 20 s left\n');
        wait(10_000);
        expect(term.raw.split('\n').filter(Boolean)).toHaveLength(2);
        bar.update({ phase: 'search', done: 39, total: 39 }); // finished: no more periodic lines
        wait(30_000);
        expect(term.raw.split('\n').filter(Boolean)).toHaveLength(2);
        // a phase whose first report is already its total is not repeated as running (tester EP)
        bar.update({ phase: 'tokenize', done: 100, total: 100 });
        wait(30_000);
        expect(term.raw.split('\n').filter(Boolean)).toHaveLength(3); // the search's closing line only
        bar.done();
        expect(jest.getTimerCount()).toBe(0);
      });
    } finally {
      jest.useRealTimers();
    }
  });

  it('minutes and seconds are rounded together: 179.6 s is 3 min 0 s, not 2 min 60 s', () => {
    expect(minutesAndSeconds(179.6)).toBe('3 min 0 s');
    expect(minutesAndSeconds(125.4)).toBe('2 min 5 s');
    expect(fmtSeconds(179.6)).toBe('3 min 0 s');
    expect([fmtSeconds(9.996), fmtSeconds(119.96), fmtSeconds(9.99)]).toEqual(['10.0 s', '2 min 0 s', '9.99 s']); // tester EP
    plainBarWithClock((bar, tick, term) => {
      bar.update({ phase: 'features', done: 0, total: 10 });
      tick(59_970);
      bar.update({ phase: 'features', done: 1, total: 10 }); // 59.97 s elapsed, 539.7 s left
      expect(term.raw).toBe('  Calibrating (FF activations)   1/10 steps  1 min 0 s, about 9 min 0 s left\n');
    });
  });

  it('the time left counts the share of the running unit done (Progress.within; tester FC: 40 s left, 2.5 s before the end)', () => {
    plainBarWithClock((bar, tick, term) => {
      bar.update({ phase: 'test', done: 0, total: 2 });
      tick(40_000);
      // 40 s for 0.96 of the first of two batches: 1.04 batches left, about 43 s (before: done 0, no estimate)
      bar.update({ phase: 'test', done: 0, total: 2, within: 0.96, detail: '96% of batch 1' });
      expect(term.raw).toMatch(/0\/2 batches {2}96% of batch 1 {2}40\.0 s, about 43\.3 s left\n$/);
    });
  });

  it("a phase's closing line times the phase up to its last count, not up to the next phase's first report", () => {
    // tester DB: the time in "✔ Validating the base model … 4.1 s" ran on through whatever came before the next
    // phase reported (a model disposed, the next phase's setup)
    plainBarWithClock((bar, tick, term) => {
      bar.update({ phase: 'validate', done: 0, total: 2 });
      tick(1_000);
      bar.update({ phase: 'validate', done: 2, total: 2 });
      tick(1_000);
      bar.update({ phase: 'validate', done: 2, total: 2 }); // a repeated last count does not move the end
      tick(7_000);
      bar.update({ phase: 'search', done: 0, total: 3 });
      tick(2_000);
      bar.update({ phase: 'search', done: 1, total: 3 }); // never completed: timed to the summary
      bar.done();
      expect(term.raw.split('\n').filter(Boolean)).toEqual([
        expect.stringMatching(/^✔ Validating the base model\s+2 batches  1\.0 s$/),
        expect.stringMatching(/^✔ Searching windows\s+1\/3 candidates  2\.0 s$/),
      ]);
    });
  });
});

describe('runningCount (a task reading several files under one phase)', () => {
  it("adds each call's count to the totals before it, so the phase never counts back; other phases pass as they are", () => {
    const seen: Progress[] = [];
    const c = runningCount('images', (p) => seen.push(p));
    c.onProgress!({ phase: 'images', done: 0, total: 60 });
    c.onProgress!({ phase: 'images', done: 60, total: 60 });
    c.next();
    c.onProgress!({ phase: 'evaluate', done: 1, total: 2 });
    c.onProgress!({ phase: 'images', done: 0, total: 40 });
    c.onProgress!({ phase: 'images', done: 40, total: 40 });
    c.next();
    c.next(); // a call that reported nothing (idx files) adds nothing
    c.onProgress!({ phase: 'images', done: 5, total: 10 });
    expect(seen.map((p) => [p.phase, p.done, p.total])).toEqual([
      ['images', 0, 60],
      ['images', 60, 60],
      ['evaluate', 1, 2],
      ['images', 60, 100],
      ['images', 100, 100],
      ['images', 105, 110],
    ]);
    expect(runningCount('images', undefined).onProgress).toBeUndefined();
  });
});

describe('holdingLoad (compress and finetune: the weights are read before the data is checked)', () => {
  it('holds a short load back until the next phase, and shows a long one once its first second has passed (tester FC, FG)', () => {
    let t = 0;
    const shown: string[] = [];
    const on = holdingLoad((p) => shown.push(`${p.phase} ${p.done}/${p.total}`), 1000, () => t);
    // short: held, then its last event shown just before the next phase's first
    on({ phase: 'load', done: 0, total: 10 });
    t = 300;
    on({ phase: 'load', done: 10, total: 10 });
    expect(shown).toEqual([]);
    on({ phase: 'tokenize', done: 1, total: 5 });
    expect(shown).toEqual(['load 10/10', 'tokenize 1/5']);
    // long: nothing for the first second, then every event as it comes
    const long: string[] = [];
    t = 0;
    const on2 = holdingLoad((p) => long.push(`${p.phase} ${p.done}/${p.total}`), 1000, () => t);
    on2({ phase: 'load', done: 0, total: 100 });
    t = 1200;
    on2({ phase: 'load', done: 40, total: 100 });
    t = 1500;
    on2({ phase: 'load', done: 100, total: 100 });
    on2({ phase: 'tokenize', done: 1, total: 5 });
    expect(long).toEqual(['load 40/100', 'load 100/100', 'tokenize 1/5']);
    // a refusal right after a short load: nothing was shown (the caller's error is the one line)
    const refused: string[] = [];
    t = 0;
    const on3 = holdingLoad((p) => refused.push(p.phase), 1000, () => t);
    on3({ phase: 'load', done: 10, total: 10 });
    expect(refused).toEqual([]);
  });
});
