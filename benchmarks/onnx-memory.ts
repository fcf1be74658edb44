/**
 * What a merge saves in onnxruntime-node: for each model, the ONNX export of the original and of the merged
 * checkpoint; the file bytes saved against the removed parameters' bytes, and the resident memory (VmRSS, as
 * the OS counts it) of a fresh process after creating an InferenceSession on each, the median of --runs
 * processes per export, with onnxruntime's default session options and with weight prepacking off.
 *
 *   node -r ts-node/register/transpile-only benchmarks/onnx-memory.ts [--runs 5] [gpt2 llama marian synthetic]
 *
 * gpt2 / llama: the fixtures merged by compress (k = 4 window 4-7 / k = 2 window 1-2, small calibration);
 * marian: marian-multi30k-en-de merged by compress in both stacks (k = 2, window 1-2, 150 calibration pairs),
 * both of its files (encoder_model.onnx + decoder_model_merged.onnx) held by the measured process;
 * synthetic: a random GPT-2-small-shaped checkpoint (12 × d 768, FF 3072, vocab 8192) whose layers 5-7 are
 * tied to layer 4's FF, so the saving stands well above the measurement noise.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ffTies, writeCheckpoint } from '../lib/checkpoint/write';
import { exportOnnx } from '../lib/export/onnx/export';
import { compress } from '../lib/pipeline/compress';
import { removeSyntheticDirs, syntheticGpt2 } from '../test/helpers/synthetic-model';

const SHARED = path.resolve(process.env.FFMERGE_SHARED ?? path.join(__dirname, '..', '..', 'shared'));
const S = (...p: string[]) => path.join(SHARED, ...p);
const CHILD = path.join(__dirname, 'onnx-session-rss.js');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function exportBytes(dir: string): number {
  const o = path.join(dir, 'onnx');
  return fs.readdirSync(o).reduce((s, f) => s + fs.statSync(path.join(o, f)).size, 0);
}

/** The export's .onnx files, comma-separated for the child (one session on each). */
function onnxFiles(dir: string): string {
  const o = path.join(dir, 'onnx');
  return fs.readdirSync(o).filter((f) => f.endsWith('.onnx')).sort().map((f) => path.join(o, f)).join(',');
}

function sessionRss(files: string, mode: 'prepack' | 'noprepack'): number {
  const r = spawnSync(process.execPath, [CHILD, files, mode], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`session child failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { after: number }).after;
}

const MB = (b: number) => (b / 1e6).toFixed(2);

interface Pair {
  name: string;
  base: string;
  merged: string;
  /** Bytes of the parameters the merge removed (float32). */
  removed: number;
}

async function prepare(name: string, tmp: string): Promise<Pair | undefined> {
  if (name === 'synthetic') {
    const s = await syntheticGpt2({ layers: 12, d: 768, heads: 12, ff: 3072, vocab: 8192, positions: 1024, seed: 3 });
    const tied = path.join(tmp, 'synthetic-tied');
    await writeCheckpoint({ source: s.dir, out: tied, format: 'tied', ties: ffTies(s.config, 'decoder', [4, 5, 6, 7]) });
    const ff = 2 * 768 * 3072 + 3072 + 768;
    const pair = { name: 'synthetic GPT-2-small shape, layers 4-7 tied', base: path.join(tmp, 'synthetic-base'), merged: path.join(tmp, 'synthetic-merged'), removed: 3 * ff * 4 };
    await exportOnnx(s.dir, { out: pair.base });
    await exportOnnx(tied, { out: pair.merged });
    removeSyntheticDirs();
    return pair;
  }
  if (name === 'marian') {
    const dir = S('fixtures', 'marian-multi30k-en-de');
    if (!fs.existsSync(dir)) {
      console.log(`${name}: skipped, ${dir} not found (needs ../shared)`);
      return undefined;
    }
    const base = path.join(tmp, 'marian-base');
    const merged = path.join(tmp, 'marian-merged');
    await exportOnnx(dir, { out: base });
    const parallel = { source: S('data', 'multi30k', 'val.en.gz'), target: S('data', 'multi30k', 'val.de.gz') };
    const r = await compress(dir, { k: 2, window: '1-2', parallel, calibrationPairs: 150, validationSentences: 20, out: merged, format: 'onnx' });
    return { name: 'marian-multi30k-en-de k=2 (window 1-2, both stacks)', base, merged, removed: r.params.removed * 4 };
  }
  const runs: Record<string, { dir: string; k: number; window: string; data: string }> = {
    gpt2: { dir: S('fixtures', 'gpt2-sotu'), k: 4, window: '4-7', data: S('data', 'lm', 'valid.txt') },
    llama: { dir: S('fixtures', 'llama-stories260k'), k: 2, window: '1-2', data: S('data', 'lm', 'stories260k-samples-valid.jsonl') },
  };
  const run = runs[name];
  if (!run) throw new Error(`unknown model ${name}; choose from gpt2 llama marian synthetic`);
  if (!fs.existsSync(run.dir)) {
    console.log(`${name}: skipped, ${run.dir} not found (needs ../shared)`);
    return undefined;
  }
  const base = path.join(tmp, `${name}-base`);
  const merged = path.join(tmp, `${name}-merged`);
  await exportOnnx(run.dir, { out: base });
  const r = await compress(run.dir, { k: run.k, window: run.window, calibration: run.data, calibrationTokens: 2048, validationTokens: 512, out: merged, format: 'onnx' });
  return { name: `${path.basename(run.dir)} k=${run.k} (window ${run.window})`, base, merged, removed: r.params.removed * 4 };
}

async function main(): Promise<void> {
  const runs = arg('runs', 5);
  const names = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--runs');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-mem-'));
  const rows: string[] = [];
  try {
    for (const name of names.length ? names : ['gpt2', 'llama', 'synthetic']) {
      const p = await prepare(name, tmp);
      if (!p) continue;
      const fileSaved = exportBytes(p.base) - exportBytes(p.merged);
      for (const mode of ['prepack', 'noprepack'] as const) {
        const base: number[] = [];
        const merged: number[] = [];
        // alternate, so slow drifts of the machine hit both sides alike
        for (let i = 0; i < runs; i++) {
          base.push(sessionRss(onnxFiles(p.base), mode));
          merged.push(sessionRss(onnxFiles(p.merged), mode));
        }
        const saved = median(base) - median(merged);
        rows.push(
          `| ${p.name} | ${mode === 'prepack' ? 'default' : 'disable_prepacking'} | ${MB(p.removed)} | ${MB(fileSaved)} (${((100 * fileSaved) / p.removed).toFixed(1)}%) | ` +
            `${MB(median(base))} | ${MB(median(merged))} | ${MB(saved)} (${((100 * saved) / p.removed).toFixed(0)}%) |`,
        );
        console.log(rows.at(-1));
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`\nmedian of ${runs} fresh processes per export; RSS after InferenceSession.create (MB = 10^6 bytes)\n`);
  console.log('| model | session options | removed params (MB) | export file saved (MB, % of removed) | RSS original (MB) | RSS merged (MB) | RSS saved (MB, % of removed) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
