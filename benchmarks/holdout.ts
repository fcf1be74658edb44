/**
 * Choosing a protocol option without the test split. Issue 15's targets were reached with one data or ranking
 * option per fixture (--draw spread, --sample-calibration, --select-by loss). Whether an option helps is itself
 * a choice, and it was first made after runs that showed test numbers. This benchmark makes it again on
 * validation alone: each fixture's validation data is cut in two disjoint halves; `--method auto` runs with and
 * without the option, choosing windows and methods on the first half only, and the second half (never seen by
 * either run) judges the two chosen models. The test split is not read.
 *
 *   node -r ts-node/register/transpile-only benchmarks/holdout.ts [gpt2 llama vit marian]
 *
 * Halves: gpt2 — valid.txt in 20-line chunks, even chunks select and odd ones judge (both halves hold all four
 * sources; the selecting half still starts with State of the Union, as valid.txt does). llama — rows 0-31 of the
 * valid rows select (without sampling: 24 rows calibrate and 8 validate, the 5:1 of the full run), rows 32-47
 * judge. vit — validation images 55000-57499 select, 57500-59999 judge. marian — val pairs 0-506 select,
 * 507-1013 judge.
 *
 * Needs ../shared (FFMERGE_SHARED overrides); a fixture whose files are missing is skipped, saying so.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { compress, type CompressOptions } from '../lib/pipeline/compress';

const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));
const S = (...p: string[]) => path.join(SHARED, ...p);

const lines = (file: string): string[] => {
  const raw = fs.readFileSync(file);
  const text = (file.endsWith('.gz') ? zlib.gunzipSync(raw) : raw).toString('utf8');
  return text.replace(/\n$/, '').split('\n');
};
const writeLines = (file: string, l: string[]) => fs.writeFileSync(file, file.endsWith('.gz') ? zlib.gzipSync(l.join('\n') + '\n') : l.join('\n') + '\n');

/** idx file (gzip) with the items [from, to) of another: header dims kept, count replaced. */
function sliceIdx(src: string, dst: string, from: number, to: number): void {
  const b = zlib.gunzipSync(fs.readFileSync(src));
  const nd = b[3]!;
  const dims = Array.from({ length: nd }, (_, i) => b.readUInt32BE(4 + 4 * i));
  const item = dims.slice(1).reduce((a, x) => a * x, 1);
  const head = Buffer.from(b.subarray(0, 4 + 4 * nd));
  head.writeUInt32BE(to - from, 4);
  const body = b.subarray(4 + 4 * nd + from * item, 4 + 4 * nd + to * item);
  fs.writeFileSync(dst, zlib.gzipSync(Buffer.concat([head, body])));
}

interface Variant {
  name: string;
  options: CompressOptions;
}
interface Fixture {
  dir: string;
  k: number;
  variants: (tmp: string) => Variant[];
}

const FIXTURES: Record<string, Fixture> = {
  gpt2: {
    dir: S('fixtures', 'gpt2-sotu'),
    k: 4,
    variants: (tmp) => {
      const all = lines(S('data', 'lm', 'valid.txt'));
      const chunk = (odd: number) => all.filter((_, i) => Math.floor(i / 20) % 2 === odd);
      writeLines(path.join(tmp, 'select.txt'), chunk(0));
      writeLines(path.join(tmp, 'judge.txt'), chunk(1));
      const base = { calibration: path.join(tmp, 'select.txt'), test: path.join(tmp, 'judge.txt') };
      return [
        { name: '--draw head (the default)', options: base },
        { name: '--draw spread', options: { ...base, draw: 'spread' } },
      ];
    },
  },
  llama: {
    dir: S('fixtures', 'llama-stories260k'),
    k: 2,
    variants: (tmp) => {
      const rows = lines(S('data', 'lm', 'stories260k-samples-valid.jsonl'));
      if (rows.length !== 48) throw new Error(`expected 48 valid rows, got ${rows.length}`);
      writeLines(path.join(tmp, 'select.jsonl'), rows.slice(0, 32));
      writeLines(path.join(tmp, 'judge.jsonl'), rows.slice(32));
      const test = path.join(tmp, 'judge.jsonl');
      return [
        { name: 'calibrate on the valid rows (the default)', options: { calibration: path.join(tmp, 'select.jsonl'), calibrationTokens: 24 * 256, test } },
        {
          name: '--sample-calibration 40960',
          options: { calibration: { sample: { seed: 1 } }, calibrationTokens: 40960, validation: path.join(tmp, 'select.jsonl'), test },
        },
      ];
    },
  },
  vit: {
    dir: S('fixtures', 'vit-fmnist'),
    k: 4,
    variants: (tmp) => {
      const img = S('data', 'fmnist', 'train-images-idx3-ubyte.gz');
      const lab = S('data', 'fmnist', 'train-labels-idx1-ubyte.gz');
      sliceIdx(img, path.join(tmp, 'judge-images.gz'), 57500, 60000);
      sliceIdx(lab, path.join(tmp, 'judge-labels.gz'), 57500, 60000);
      const base: CompressOptions = {
        images: { images: img, labels: lab },
        validationStart: 55000,
        validationImages: 2500,
        test: { images: path.join(tmp, 'judge-images.gz'), labels: path.join(tmp, 'judge-labels.gz') },
      };
      return [
        { name: '--select-by accuracy (the default)', options: base },
        { name: '--select-by loss', options: { ...base, selectBy: 'loss' } },
      ];
    },
  },
  marian: {
    dir: S('fixtures', 'marian-multi30k-en-de'),
    k: 2,
    variants: (tmp) => {
      const en = lines(S('data', 'multi30k', 'val.en.gz'));
      const de = lines(S('data', 'multi30k', 'val.de.gz'));
      const half = Math.floor(en.length / 2);
      for (const [n, a, b] of [['select', 0, half], ['judge', half, en.length]] as const) {
        writeLines(path.join(tmp, `${n}.en.gz`), en.slice(a, b));
        writeLines(path.join(tmp, `${n}.de.gz`), de.slice(a, b));
      }
      const base: CompressOptions = {
        parallel: { source: S('data', 'multi30k', 'train.en.gz'), target: S('data', 'multi30k', 'train.de.gz') },
        validation: { source: path.join(tmp, 'select.en.gz'), target: path.join(tmp, 'select.de.gz') },
        test: { source: path.join(tmp, 'judge.en.gz'), target: path.join(tmp, 'judge.de.gz') },
      };
      return [
        { name: '--select-by bleu (the default)', options: base },
        { name: '--select-by loss', options: { ...base, selectBy: 'loss' } },
      ];
    },
  },
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  for (const name of names.length ? names : Object.keys(FIXTURES)) {
    const f = FIXTURES[name];
    if (!f) throw new Error(`unknown fixture ${name}; choose from ${Object.keys(FIXTURES).join(', ')}`);
    if (!fs.existsSync(f.dir)) {
      console.log(`\n## ${name}: skipped, ${f.dir} not found (needs ../shared)`);
      continue;
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-holdout-'));
    try {
      console.log(`\n## ${name}, k = ${f.k}, --method auto: chosen on the selecting half, judged on the held-out half\n`);
      console.log('| option | chosen | selecting half | held-out half | data | time |\n|---|---|---|---|---|---|');
      for (const v of f.variants(tmp)) {
        const t0 = performance.now();
        const r = await compress(f.dir, { k: f.k, method: 'auto', ...v.options });
        const s = (performance.now() - t0) / 1000;
        const fmt = (x: number | undefined) => (x === undefined ? '-' : r.metric.name === 'accuracy' ? x.toFixed(4) : x.toFixed(3));
        const chosen = `${r.method} + ${r.recover} at ${r.windows.map((w) => `${w.stack} ${w.window}`).join(', ')}`;
        const data = `cal ${r.data.calibration}, val ${r.data.validation}, held-out ${r.data.test} ${r.data.unit}`;
        console.log(`| ${v.name} | ${chosen} | ${fmt(r.merged.validation)} | **${fmt(r.merged.test)}** (base ${fmt(r.base.test)}) | ${data} | ${s.toFixed(0)} s |`);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
