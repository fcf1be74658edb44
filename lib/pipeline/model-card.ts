/**
 * The model card (README.md) written into every compress output, as mergekit does for its merges: what was
 * merged and how, the metric before and after, what was removed, and how to load the format on disk. It is
 * rebuilt from report.json by `ffmerge convert`, so it always describes the format it sits next to.
 */
import * as path from 'node:path';
import type { CompressFormat } from './options';
import type { CompressResult } from './result';

const METRIC = { perplexity: 'perplexity', accuracy: 'top-1 accuracy', bleu: 'greedy BLEU' } as const;
/** What each merge method did, in a phrase (methods not listed get none). */
const METHOD_NOTE: Record<string, string> = {
  permute: "the paper's merge: units aligned to the anchor by maximum correlation, then averaged",
  vanilla: 'averaged without alignment',
  select: 'the d_ff pooled units that best reproduce every position, W_out fitted by least squares',
};

function num(v: number | undefined, metric: string): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  return metric === 'accuracy' ? `${(100 * v).toFixed(2)}%` : v.toFixed(metric === 'bleu' ? 2 : 3);
}

// Not toLocaleString: its first call loads ICU data, ~40 ms on the host's JS thread.
const int = (n: number) => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

export function modelCard(r: Omit<CompressResult, 'out'>, format: CompressFormat): string {
  const m = r.metric.name;
  const multi = Object.keys(r.layers).length > 1;
  const adjusted = r.windows.filter((w) => w.adjusted?.length).map((w) => `${multi ? `${w.stack} ` : ''}layer${w.adjusted!.length > 1 ? 's' : ''} ${w.adjusted!.join(', ')}`).join('; ');
  const windows = r.windows.map((w) => `${multi ? `${w.stack} ` : ''}layers ${w.layers.join(', ')} (anchor ${w.anchor})`).join('; ');
  const rows = [
    `| base | ${num(r.base.validation, m)} | ${num(r.base.test, m)} |`,
    `| merged (${r.method}${r.recover !== 'none' ? ` + ${r.recover}` : ''}) | ${num(r.merged.validation, m)} | ${num(r.merged.test, m)} |`,
    ...Object.entries(r.baselines).map(([name, b]) => `| ${name} baseline (${int(b.paramsRemoved)} params) | ${num(b.validation, m)} | ${num(b.test, m)} |`),
  ];
  const loading =
    format === 'onnx'
      ? [
          'This folder is an **ONNX** export laid out as Hugging Face Optimum lays out its exports (`onnx/model.onnx`,',
          'or `onnx/encoder_model.onnx` + `onnx/decoder_model_merged.onnx` for a translation model, with config and',
          'tokenizer files beside it): each merged FF sublayer is one initializer that every layer of its',
          'window reads, so onnxruntime (and transformers.js on top of it) holds one copy.',
        ]
      : format === 'tied'
      ? [
          'This folder is in the **tied** format: each merged FF sublayer is stored once, and the tensors of the',
          'other layers of its window are absent from `model.safetensors`. The tie map (tied name → stored name) is in',
          "the safetensors metadata (`ffmerge_ties`) and in `config.json` under `ffmerge.ties`.",
          '',
          '- ffmerge: `const model = await loadModel(dir)` restores the ties.',
          '- Any Hugging Face loader: first write the expanded format, which loads as-is:',
          '  `npx ffmerge convert <this folder> --format expanded --out <folder>`.',
          '- Hugging Face transformers directly: load, then point each tied Parameter at its stored one:',
          '',
          '```python',
          'from transformers import AutoModel',
          `model = AutoModel.from_pretrained("${path.basename(r.model)}-ffmerge")  # the tied tensors are reported missing`,
          'for tied, stored in model.config.ffmerge["ties"].items():',
          '    m, _, a = tied.rpartition("."); s, _, b = stored.rpartition(".")',
          '    setattr(model.get_submodule(m), a, getattr(model.get_submodule(s), b))',
          '```',
        ]
      : [
          'This folder is in the **expanded** format: the original architecture and tensor names, with every layer of a',
          'merged window holding the same merged weights. It loads anywhere the original model loads, as-is.',
          'The file is as large as the original; `npx ffmerge convert <this folder> --format tied --out <folder>` stores each',
          'merged FF once.',
        ];
  return [
    `# ${path.basename(r.model)} with merged feed-forward sublayers (ffmerge)`,
    '',
    `This model is \`${path.basename(r.model)}\` (${r.modelType}, ${Object.entries(r.layers).map(([s, n]) => `${n} ${s}`).join(' + ')} layers)`,
    'compressed by [ffmerge](https://www.npmjs.com/package/ffmerge), which reproduces "Merging Feed-Forward Sublayers',
    'for Compressed Transformers" (Verma, Murray, Duh 2025) and goes beyond it: the feed-forward (FF) sublayers of k',
    `adjacent layers are merged into one FF that all k positions share. ${r.recover === 'finetune' ? 'The merged model was then fine-tuned with the ties kept.' : 'No gradient training was done.'}`,
    '',
    '## What was merged',
    `- k = ${r.k}: ${windows}`,
    ...(r.earlierWindows?.length ? [`- kept from the source, already an ffmerge output: ${r.earlierWindows.map((w) => `${multi ? `${w.stack} ` : ''}layers ${w.layers.join(', ')}`).join('; ')} (each sharing one FF, as before)`] : []),
    `- method: \`${r.method}\`${METHOD_NOTE[r.method] ? ` (${METHOD_NOTE[r.method]})` : ''}; recover: \`${r.recover}\``,
    ...(adjusted ? [`- also rewritten by the recover method, each keeping its own FF (not shared, same size): ${adjusted}`] : []),
    `- chosen by: ${r.candidates.length > 0 ? `searching ${r.candidates.length} candidates (windows${r.candidates.some((c) => c.method) ? ' and method combinations' : ''}) on validation ${METRIC[m]}` : 'given by the user'}`,
    `- calibration: ${int(r.data.calibration)} ${r.data.unit}; validation: ${int(r.data.validation)} ${r.data.unit}${r.data.test !== undefined ? `; test: ${int(r.data.test)} ${r.data.unit}` : ''}`,
    '',
    '## What it costs',
    `${METRIC[m]} (${r.metric.higherIsBetter ? 'higher' : 'lower'} is better):`,
    '',
    '| model | validation | test |',
    '|---|---|---|',
    ...rows,
    '',
    '## What was removed',
    `- parameters: ${int(r.params.removed)} of ${int(r.params.before)} (${(100 * r.params.fraction).toFixed(1)}%)`,
    `- bytes: ${int(r.bytes.removed)} of ${int(r.bytes.before)} (${(100 * r.bytes.fraction).toFixed(1)}%) in the tied format`,
    '- compute per token is unchanged (every layer still runs its FF).',
    '',
    '## How to load it',
    ...loading,
    '',
    'The full numbers (every candidate window, timings) are in `report.json`.',
    '',
  ].join('\n');
}
