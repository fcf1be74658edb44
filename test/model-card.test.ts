/**
 * The model card's text, without writing a model: the tied format's transformers snippet loads the class whose
 * parameter names are the checkpoint's and the folder the card is in, and a card built from a folder's record
 * says what the record says (fine-tuned or not, format on disk) for records of any shape. The writers that
 * use it are tested end to end in finetune.test.ts, cli-export.test.ts and checkpoint-write.test.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { frontMatter, inlineCode, modelCard, outputCard } from '../lib/pipeline/model-card';
import { removeSyntheticDirs, tempDir } from './helpers/synthetic-model';
import { modelName } from '../lib/files';
import { defaultOut } from '../lib/cli/flags';
import type { CompressResult } from '../lib/pipeline/result';
import { formatReport } from '../lib/cli/report';

const report = (modelType: string, layers: CompressResult['layers'] = { decoder: 5 }): Omit<CompressResult, 'out'> => ({
  model: `/models/${modelType}-base`,
  modelType,
  task: 'language-modeling',
  metric: { name: 'perplexity', higherIsBetter: false },
  layers,
  k: 2,
  method: 'permute',
  anchor: 'first',
  recover: 'none',
  stacks: 'decoder',
  windows: [{ stack: 'decoder', window: '3-4', layers: [3, 4], anchor: 3, method: 'permute', recover: 'none' }],
  candidates: [],
  windowsGiven: true,
  base: { validation: 4.435 },
  merged: { validation: 14.525, test: 15.1 },
  baselines: {},
  params: { before: 260032, after: 227008, removed: 33024, fraction: 0.127 },
  bytes: { before: 1040128, after: 908032, removed: 132096, fraction: 0.127 },
  data: { unit: 'tokens', calibration: 2048, validation: 2048, calibrationFeatures: { decoder: 2048 } } as CompressResult['data'],
  timings: {},
});

/** The python block of a card. */
const python = (card: string) => card.slice(card.indexOf('```python'), card.lastIndexOf('```'));

describe('the tied-format snippet', () => {
  test.each([
    ['llama', ['LlamaForCausalLM'], 'AutoModelForCausalLM'],
    ['gpt2', ['GPT2LMHeadModel'], 'AutoModelForCausalLM'],
    ['vit', ['ViTForImageClassification'], 'AutoModelForImageClassification'],
    ['marian', ['MarianMTModel'], 'AutoModelForSeq2SeqLM'],
    ['bert', ['BertForSequenceClassification'], 'AutoModelForSequenceClassification'],
  ])('%s loads with the class holding the base model under its prefix (%s → %s), from the output folder', (type, architectures, cls) => {
    // before: AutoModel (the bare base model: no "model." level for model.layers.4.mlp) and "<input>-ffmerge"
    const card = modelCard(report(type), 'tied', { dir: '/tmp/card/s1', config: { model_type: type, architectures } });
    const py = python(card);
    expect(py).toContain(`from transformers import ${cls} `);
    expect(py).toContain(`model = ${cls}.from_pretrained("s1")`);
    expect(py).not.toMatch(/AutoModel\.|-ffmerge|removeprefix/);
  });

  test('a BertModel checkpoint loads as the bare model, so the tie names lose their "bert." prefix', () => {
    const py = python(modelCard(report('bert', { encoder: 4 }), 'tied', { dir: 'out', config: { model_type: 'bert', architectures: ['BertModel'] } }));
    expect(py).toContain('model = AutoModel.from_pretrained("out")');
    expect(py).toContain('tied, stored = tied.removeprefix("bert."), stored.removeprefix("bert.")');
  });

  test('a folder name with quotes is one valid string literal', () => {
    const py = python(modelCard(report('llama'), 'tied', { dir: 'a "b"\\c', config: { model_type: 'llama' } }));
    expect(py).toContain('from_pretrained("a \\"b\\"\\\\c")');
  });

  test('a compress card is otherwise what it was: no fine-tuning section, "No gradient training was done."', () => {
    const card = modelCard(report('llama'), 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).toContain('No gradient training was done.');
    expect(card).not.toContain('## Fine-tuning');
    expect(card).toContain('| merged (permute) | 14.525 | 15.100 |');
    expect(card).toContain('- chosen by: given by the user');
  });

  test('a re-compress of an output recovered by fine-tuning does not say no training was done (tester Z)', () => {
    const earlierWindows = [{ stack: 'decoder' as const, window: '0-1', layers: [0, 1], anchor: 0, method: 'permute', recover: 'finetune' }];
    const card = modelCard({ ...report('llama'), earlierWindows }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).not.toContain('No gradient training was done.');
    expect(card).toContain('an earlier merge the source carries was recovered by fine-tuning');
  });

  test("a plug-in recover method that trains is said to have trained, whatever its name (the card keyed on 'finetune')", () => {
    const trainedBy = (recover: string, trained?: boolean) =>
      modelCard({ ...report('llama'), recover, windows: [{ ...report('llama').windows[0]!, recover, ...(trained === undefined ? {} : { trained }) }] }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(trainedBy('my-sgd', true)).toContain('The merged model was then fine-tuned with the ties kept.');
    expect(trainedBy('my-sgd', true)).not.toMatch(/no gradient training/i);
    expect(trainedBy('my-fit', false)).toContain('No gradient training was done.');
    // a report.json from before the field: 'finetune' by its name
    expect(trainedBy('finetune')).toContain('The merged model was then fine-tuned with the ties kept.');
  });

  test("the plug-ins no option picked are the report's note, not the card's (tester FH: every card named them)", () => {
    const unpicked = "plug-ins given but not picked by name, so not run: recover method x (pick them with method, recover or baselines; method 'auto' tries ffmerge's own combinations only)";
    const r = { ...report('llama'), data: { ...report('llama').data, notes: ['a note', unpicked] } };
    const card = modelCard(r, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).toContain('  - a note');
    expect(card).not.toContain('not picked');
  });

  test("a re-compress of an output a training plug-in recovered says so, by the record's trained flag (tester FL)", () => {
    const earlierWindows = [{ stack: 'decoder' as const, window: '0-1', layers: [0, 1], anchor: 0, method: 'permute', recover: 'my-train', trained: true }];
    const card = modelCard({ ...report('llama'), earlierWindows }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).toContain('an earlier merge the source carries was recovered by fine-tuning');
    const untrained = modelCard({ ...report('llama'), earlierWindows: [{ ...earlierWindows[0]!, trained: undefined, recover: 'my-fit' }] }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(untrained).toContain('No gradient training was done.');
  });

  test('the window table marks the pairs kept together, not each pair alone (tester Z)', () => {
    const r = {
      ...report('llama'),
      k: 3,
      windowsGiven: false,
      windows: [
        { stack: 'decoder' as const, window: '0-1', layers: [0, 1], anchor: 0, method: 'permute', recover: 'none' },
        { stack: 'decoder' as const, window: '2-3', layers: [2, 3], anchor: 2, method: 'permute', recover: 'none' },
      ],
      candidates: [
        { windows: { decoder: '0-1' }, start: 0, score: 5.028 },
        { windows: { decoder: '2-3' }, start: 2, score: 5.667 },
        { windows: { decoder: '0-2' }, start: 0, score: 11.5 },
        { windows: { decoder: '0-1,2-3' }, start: 0, score: 9.997 },
      ],
    };
    const text = formatReport({ ...r, data: { ...r.data, search: 2048, notes: [] } } as CompressResult);
    const rows = text.slice(text.indexOf('window search')).split('\n');
    expect(rows.filter((l) => l.includes('← chosen'))).toEqual([expect.stringMatching(/^0-1,2-3 +9\.997/)]);
  });

  test("the summary lists each baseline's own search, its chosen placement marked (tester FK: only report.json had them)", () => {
    const baselines = {
      'drop-ff': { windows: { decoder: '2' }, paramsRemoved: 33024, validation: 7.962, candidates: [{ windows: { decoder: '1' }, start: 1, score: 10.049 }, { windows: { decoder: '2' }, start: 2, score: 7.962 }] },
      // one placement only: built, not scored, so no rows
      'drop-layers': { windows: { decoder: '4' }, paramsRemoved: 40000, validation: 9.5, candidates: [] },
    };
    const text = formatReport({ ...report('llama'), baselines, data: { ...report('llama').data, search: 2048, notes: [] } } as CompressResult);
    const rows = text.slice(text.indexOf('baseline search (2,048 validation tokens per candidate):')).split('\n\n')[0]!.split('\n');
    expect(rows.slice(2)).toEqual([expect.stringMatching(/^drop-ff +1 +10\.049 *$/), expect.stringMatching(/^drop-ff +2 +7\.962 +← chosen$/)]);
    expect(formatReport({ ...report('llama'), data: { ...report('llama').data, notes: [] } } as CompressResult)).not.toContain('baseline search');
    // --stacks independent: each candidate names one stack, the kept placement both (tester FL: none marked)
    const independent = {
      ...report('marian', { encoder: 6, decoder: 6 }),
      baselines: { 'drop-ff': { windows: { encoder: '0', decoder: '5' }, paramsRemoved: 1, validation: 30, candidates: [{ windows: { encoder: '0' }, start: 0, score: 30 }, { windows: { encoder: '1' }, start: 1, score: 29 }, { windows: { decoder: '5' }, start: 5, score: 31 }] } },
      data: { ...report('marian').data, search: 64, notes: [] },
    };
    const marked = formatReport(independent as CompressResult).split('\n').filter((l) => l.includes('← chosen'));
    expect(marked).toEqual([expect.stringMatching(/^drop-ff +encoder 0 /), expect.stringMatching(/^drop-ff +decoder 5 /)]);
  });

  test('the card names the block size the LM numbers were scored in, and the search budget (tester Z)', () => {
    const card = modelCard({ ...report('llama'), data: { ...report('llama').data, search: 1024, blockSize: 128, test: 4096 } }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).toContain('- calibration: 2,048 tokens; validation: 2,048 tokens (1,024 per search candidate); test: 4,096 tokens; text scored in blocks of 128 tokens (`ffmerge eval --block-size 128`)');
    // token-id rows scored (calibration sampled at the block size): no --block-size, which eval refuses on rows (tester CH)
    const rows = modelCard({ ...report('llama'), data: { ...report('llama').data, blockSize: 256, textScored: false } }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(rows).not.toContain('--block-size');
    // an older report without search or blockSize: the line as before
    expect(modelCard(report('llama'), 'tied', { dir: 's1', config: { model_type: 'llama' } })).toContain('- calibration: 2,048 tokens; validation: 2,048 tokens\n');
  });

  test('the card lists the data notes; with blocks drawn across a file it says eval reproduces only the test split (tester AP)', () => {
    const notes = ['validation: blocks drawn across the whole file (fixed seeded order)', 'weights stored in BF16: the numbers were measured in float32 before the merged weights were rounded to it'];
    const card = modelCard({ ...report('llama'), data: { ...report('llama').data, blockSize: 128, notes } }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).toContain('(`ffmerge eval --block-size 128` reproduces the test numbers; eval reads text from its start, not drawn across the file)');
    for (const n of notes) expect(card).toContain(`  - ${n}\n`);
  });

  test('windows compress chose without a search (only one possible) are not said to be the user\'s', () => {
    const card = modelCard({ ...report('llama'), windowsGiven: false }, 'tied', { dir: 's1', config: { model_type: 'llama' } });
    expect(card).toContain('- chosen by: no search: the only window of k = 2 adjacent layers');
  });

  test('a source fine-tuned by ffmerge: the card says whether it had been merged before', () => {
    const earlierWindows = [{ stack: 'decoder' as const, layers: [0, 1] }];
    const merged = modelCard({ ...report('llama'), earlierWindows }, 'tied', { dir: 's1', config: { model_type: 'llama', ffmerge: { windows: earlierWindows, finetune: { steps: 3, mergedBefore: ['decoder 0-1'] } } } });
    expect(merged).toContain('its source had been fine-tuned with ffmerge after the merge of decoder 0-1 (');
    // fine-tuned before the earlier merge (tester DJ: "after an earlier merge", as there was one)
    const before = modelCard({ ...report('llama'), earlierWindows }, 'tied', { dir: 's1', config: { model_type: 'llama', ffmerge: { windows: earlierWindows, sourceFinetune: { steps: 3, mergedBefore: [] } } } });
    expect(before).toContain('its source had been fine-tuned with ffmerge before any merge (');
    // a record that does not say when: no claim either way
    const unsaid = modelCard({ ...report('llama'), earlierWindows }, 'tied', { dir: 's1', config: { model_type: 'llama', ffmerge: { windows: earlierWindows, finetune: { steps: 3 } } } });
    expect(unsaid).toContain('its source had been fine-tuned with ffmerge (`ffmerge.sourceFinetune`');
    // its runs counted all the same, and both keys named (tester DM)
    const two = modelCard(report('llama'), 'tied', { dir: 's1', config: { model_type: 'llama', ffmerge: { finetune: { steps: 3 }, earlierFinetunes: [{ steps: 2 }] } } });
    expect(two).toContain('its source had been fine-tuned with ffmerge in 2 runs (`ffmerge.sourceFinetune` and `ffmerge.sourceEarlierFinetunes` in config.json)');
    // a model never merged: its earlier run is not said to be "before any merge"
    const plainTwice = outputCard({ model_type: 'llama', ffmerge: { format: 'tied', finetune: { steps: 4, mergedBefore: [] }, earlierFinetunes: [{ steps: 5, mergedBefore: [] }] } }, 'tied', 'x')!;
    expect(plainTwice).toContain('- the earlier run: 5 steps; its summary is in');
    // before: a plain model fine-tuned, then compressed, was said to have been merged before
    const plain = modelCard(report('llama'), 'tied', { dir: 's1', config: { model_type: 'llama', ffmerge: { finetune: { steps: 3 } } } });
    expect(plain).toContain('its source had been fine-tuned with ffmerge (`ffmerge.sourceFinetune` in config.json)');
    expect(plain).not.toContain('after an earlier merge');
    // the same card rebuilt from its output's record (convert, export), which lists this run's window
    const rebuilt = modelCard(report('llama'), 'expanded', { dir: 's1', config: { model_type: 'llama', ffmerge: { windows: report('llama').windows, sourceFinetune: { steps: 3 } } } });
    expect(rebuilt).toContain('its source had been fine-tuned with ffmerge (`ffmerge.sourceFinetune` in config.json)');
    // a merge recovered by fine-tuning tells the source's runs as well (tester DQ: left out)
    const recovered = modelCard({ ...report('llama'), recover: 'finetune' }, 'tied', { dir: 's1', config: { model_type: 'llama', ffmerge: { finetune: { steps: 3, mergedBefore: [] }, earlierFinetunes: [{ steps: 2, mergedBefore: [] }] } } });
    expect(recovered).toContain('The merged model was then fine-tuned with the ties kept. Before this merge, its source had been fine-tuned with ffmerge in 2 runs (before any merge; before any merge)');
  });
});

describe('outputCard: from the folder record', () => {
  const windows = [{ stack: 'decoder', window: '3-4', layers: [3, 4], anchor: 3, method: 'permute', recover: 'none' }];
  const finetune = { steps: 20, lr: 5e-4, batch: 4, seq: 128, schedule: 'constant', trainable: 'all', data: 'calibration.txt', valid: 'valid.jsonl', firstLoss: 2.7588, lastLoss: 2.0246, valBefore: 2.6133, valAfter: 1.8924 };

  test('a fine-tuned model: the fine-tuning section, no "no gradient training" claim, no pre-training numbers', () => {
    const card = outputCard({ model_type: 'llama', ffmerge: { format: 'tied', k: 2, windows, finetune } }, 'tied', '/x/s1ft')!;
    expect(card).toMatch(/^---\ntags:\n  - ffmerge\n---\n\n# s1ft: a llama model with merged feed-forward sublayers, fine-tuned/);
    expect(card).not.toMatch(/no gradient training/i);
    expect(card).toContain('- layers 3, 4 share one FF (anchor 3, method `permute`, recover `none`)');
    expect(card).toContain('## Fine-tuning');
    expect(card).toContain('20 steps after the merge');
    expect(card).toContain('data: `calibration.txt`; validation: `valid.jsonl`');
    expect(card).toContain('training loss, first step → last: 2.759 → 2.025');
    expect(card).toContain(`validation loss (mean NLL) before → after: 2.613 → 1.892 (perplexity ${Math.exp(2.6133).toFixed(3)} → ${Math.exp(1.8924).toFixed(3)}, in blocks of 128 tokens)`);
    expect(card).not.toContain('| merged');
    expect(card).toContain('**tied** format');
    expect(python(card)).toContain('AutoModelForCausalLM.from_pretrained("s1ft")');
  });

  test('a second fine-tune counts every run\'s steps; a 16-bit folder says its numbers were measured in float32 (tester CH)', () => {
    const config = { model_type: 'llama', dtype: 'bfloat16', ffmerge: { format: 'tied', windows, finetune, earlierFinetunes: [{ ...finetune, steps: 30 }] } };
    const card = outputCard(config, 'tied', 'x')!;
    // before: "20 steps after the merge" for a model 50 steps past it
    expect(card).toContain('- 20 steps in the last of 2 fine-tuning runs (50 steps in all of them), this one after the merge');
    expect(card).toContain('- the earlier run: 30 steps; its summary is in `config.json` under `ffmerge.earlierFinetunes`');
    const two = outputCard({ ...config, ffmerge: { ...config.ffmerge, earlierFinetunes: [{ steps: 30, mergedBefore: [] }, { steps: 7, mergedBefore: ['decoder 3-4'] }] } }, 'tied', 'x')!;
    expect(two).toContain('- the 2 earlier runs, oldest first: 30 steps before any merge; 7 steps after the merge of decoder 3-4; their summaries are in');
    expect(card).toContain('- weights stored in BF16: the losses above were measured in float32');
    expect(outputCard({ ...config, dtype: 'float32' }, 'tied', 'x')).not.toContain('weights stored in');
    expect(outputCard(config, 'onnx', 'x')).not.toContain('weights stored in');
    expect(outputCard({ ...config, ffmerge: { ...config.ffmerge, earlierFinetunes: [{}] } }, 'tied', 'x')).toContain('(not every run recorded its steps)');
  });

  test('with a report: the compress card, its merged row marked as before the fine-tuning, plus the section', () => {
    const card = outputCard({ model_type: 'llama', ffmerge: { format: 'expanded', windows, finetune } }, 'expanded', 'x', report('llama'))!;
    expect(card).toContain('| merged (permute), before fine-tuning | 14.525 |');
    expect(card).toContain('## Fine-tuning');
    expect(card).not.toMatch(/no gradient training/i);
    expect(card).toContain('**expanded** format');
  });

  test('ONNX: the export paragraph, no safetensors-format paragraph', () => {
    for (const rep of [undefined, report('llama')]) {
      const card = outputCard({ model_type: 'llama', ffmerge: { format: 'onnx', windows, onnx: { dtype: 'fp16' } } }, 'onnx', 'x', rep)!;
      expect(card).toContain('**ONNX** export');
      expect(card).toContain('stored in fp16');
      expect(card).not.toMatch(/tied\*\* format|model\.safetensors|```python/);
      // inspect reads safetensors, which an ONNX folder has not (before: "inspect <this folder>", which fails there)
      expect(card).not.toContain('inspect <this folder>');
    }
  });

  test('the source card\'s license and Hub metadata are carried, its results not; base_model where the Hub id is known (tester EW)', () => {
    const src = tempDir('card-src');
    fs.writeFileSync(path.join(src, 'README.md'), '---\nlicense: llama3.2\nlanguage:\n- en\n- de\npipeline_tag: text-generation\nbase_model: meta-llama/Llama-3.2-1B-Base\ntags:\n- facebook\nmodel-index:\n- name: x\n  results: []\n---\n# Llama\n');
    const config = { model_type: 'llama', ffmerge: { format: 'tied', k: 2, windows, finetune } };
    const meta = (card: string) => parseYaml(/^---\n([\s\S]*?)\n---\n\n# /.exec(card)![1]!) as Record<string, unknown>;
    // convert / export: the same weights, so the source's base model too
    expect(meta(outputCard(config, 'expanded', 'x', undefined, src)!)).toEqual({ license: 'llama3.2', language: ['en', 'de'], pipeline_tag: 'text-generation', base_model: 'meta-llama/Llama-3.2-1B-Base', tags: ['facebook', 'ffmerge'] });
    // compress or finetune of a plain folder: its base model would be the grandparent, and its id is unknown
    expect(meta(frontMatter(src, true) + '# t')).toEqual({ license: 'llama3.2', language: ['en', 'de'], pipeline_tag: 'text-generation', tags: ['facebook', 'ffmerge'] });
    // in the Hugging Face cache the source's id is known: it is the base model
    const snap = path.join(tempDir('card-hub'), 'models--meta-llama--Llama-3.2-1B', 'snapshots', 'abc123');
    fs.mkdirSync(snap, { recursive: true });
    fs.copyFileSync(path.join(src, 'README.md'), path.join(snap, 'README.md'));
    expect(meta(frontMatter(snap, true) + '# t').base_model).toBe('meta-llama/Llama-3.2-1B');
    // quoted as YAML 1.1 reads it (the Hub's PyYAML): "no" (Norwegian) and "on" stay strings (tester FA)
    fs.writeFileSync(path.join(src, 'README.md'), '---\nlanguage:\n- en\n- "no"\ntags:\n- "on"\n---\n# x\n');
    const head = outputCard(config, 'tied', 'x', undefined, src)!;
    expect(head).toContain('  - "no"\n');
    expect(head).toContain('  - "on"\n');
    // an ONNX folder holds no weights transformers loads: the Hub's library is transformers.js (tester EZ)
    fs.writeFileSync(path.join(src, 'README.md'), '---\nlicense: mit\nlibrary_name: transformers\n---\n# x\n');
    expect(meta(outputCard(config, 'onnx', 'x', undefined, src)!)).toMatchObject({ license: 'mit', library_name: 'transformers.js' });
    expect(meta(outputCard(config, 'tied', 'x', undefined, src)!)).toMatchObject({ library_name: 'transformers' });
    // a card without front matter, or with front matter that does not parse: ffmerge's tag alone
    fs.writeFileSync(path.join(src, 'README.md'), '---\nlicense: [unclosed\n---\n# x\n');
    expect(meta(frontMatter(src, true) + '# t')).toEqual({ tags: ['ffmerge'] });
    // front matter larger than any real card's is not parsed (tester GD: 3.8M nested brackets took 18 s and 2 GB)
    fs.writeFileSync(path.join(src, 'README.md'), `---\nlicense: mit\ntags:\n${'- t\n'.repeat(20_000)}---\n# x\n`);
    expect(meta(frontMatter(src, true) + '# t')).toEqual({ tags: ['ffmerge'] });
    fs.writeFileSync(path.join(src, 'README.md'), `---\nlicense: mit\ntags:\n${'- t\n'.repeat(10_000)}---\n# x\n`);
    expect(meta(frontMatter(src, true) + '# t').license).toBe('mit');
  });

  test('a plain model: no card (its own, if any, is kept); fine-tuned with no summary: said so', () => {
    expect(outputCard({ model_type: 'llama' }, 'tied', 'x')).toBeUndefined();
    expect(outputCard({ model_type: 'llama', ffmerge: { format: 'tied', onnx: {} } }, 'onnx', 'x')).toBeUndefined();
    const card = outputCard({ model_type: 'gpt2', ffmerge: { format: 'tied', finetune: {} } }, 'tied', 'x')!;
    expect(card).toMatch(/^---\ntags:\n  - ffmerge\n---\n\n# x: a gpt2 model fine-tuned \(ffmerge\)/);
    expect(card).toContain('no summary of the training was recorded');
    expect(card).toContain('loads anywhere the original model loads, as-is');
    expect(card).not.toContain('```python');
  });

  test('a layer an earlier merge rewrote and a later one took in is said to be merged since (tester DJ)', () => {
    const two = [
      { stack: 'decoder', window: '0-1', layers: [0, 1], method: 'select', recover: 'refit-res', adjusted: [2, 3] },
      { stack: 'decoder', window: '2-3', layers: [2, 3], method: 'permute', recover: 'none' },
    ];
    const card = outputCard({ model_type: 'llama', ffmerge: { format: 'tied', windows: two, finetune: { steps: 1 } } }, 'tied', 'x')!;
    expect(card).toContain('the recover method also rewrote layers 2, 3, at the same size, none newly shared (layers 2, 3 since merged by a later window)');
    expect(card).toContain('- layers 2, 3 share one FF (method `permute`, recover `none`)\n');
  });

  test('a model fine-tuned with nothing merged: the section says so, not "after the merge, the ties kept"', () => {
    const card = outputCard({ model_type: 'llama', ffmerge: { format: 'tied', finetune: { steps: 2, batch: 4 } } }, 'tied', 'x')!;
    expect(card).toContain('- 2 steps with nothing merged (every layer keeps its own FF): batch 4');
    expect(card).not.toMatch(/after the merge|ties kept/);
    const merged = outputCard({ model_type: 'llama', ffmerge: { format: 'tied', windows: [{ stack: 'decoder', window: '3-4', layers: [3, 4] }], finetune: { steps: 2 } } }, 'tied', 'x')!;
    expect(merged).toContain('- 2 steps after the merge, the ties kept (each merged FF trained as one)');
  });

  test('records and reports of any shape give a card, never a throw', () => {
    const odd: unknown[] = [['1-2'], [null, 3, { layers: 'x' }, { layers: [1, 2], stack: { a: 1 }, anchor: [] }], 'windows', {}];
    for (const w of odd) {
      for (const f of [undefined, null, 7, 'x', { steps: 'many', valBefore: 'x', lr: {} }]) {
        const card = outputCard({ model_type: ['x'], ffmerge: { windows: w, ...(f !== undefined ? { finetune: f } : {}) } }, 'tied', 'x', { metric: 3 });
        expect(typeof card).toBe('string');
        expect(card).not.toMatch(/undefined|\[object/);
      }
    }
  });
});

test('compress of a folder ffmerge had fine-tuned says its source was trained, not "no gradient training", and so does its conversion', () => {
  const plain = modelCard(report('llama'), 'tied', { dir: '/o/x', config: { model_type: 'llama' } });
  expect(plain).toContain('No gradient training was done.');
  // compress's card: the config is the source's, whose record holds the fine-tuning
  const source = { model_type: 'llama', ffmerge: { format: 'tied', windows: [], finetune: { steps: 30 } } };
  const card = modelCard(report('llama'), 'tied', { dir: '/o/x', config: source });
  expect(card).not.toContain('No gradient training was done.');
  expect(card).toContain('its source had been fine-tuned with ffmerge');
  // a conversion of that output: its own record carries the source's training on
  const output = { model_type: 'llama', ffmerge: { format: 'tied', windows: report('llama').windows, sourceFinetune: { steps: 30 } } };
  expect(outputCard(output, 'expanded', '/o/x-expanded', report('llama'))).toContain('its source had been fine-tuned with ffmerge');
});

describe('the source name on the card', () => {
  it('a folder in Hugging Face\'s cache is named org/name, not by its snapshot hash', () => {
    const snapshot = '/root/.cache/huggingface/hub/models--openai-community--gpt2/snapshots/607a30d783dfa663caf39e06633721c8d4cfcd7e';
    expect(modelName(snapshot)).toBe('openai-community/gpt2');
    expect(modelName('/root/.cache/huggingface/hub/models--gpt2/snapshots/abc/')).toBe('gpt2');
    expect(modelName('/models/llama-stories260k')).toBe('llama-stories260k');
    const card = modelCard({ ...report('gpt2'), model: snapshot }, 'tied', { dir: '/out/merged', config: { model_type: 'gpt2' } });
    expect(card.split('\n')[0]).toBe('# openai-community/gpt2 with merged feed-forward sublayers (ffmerge)');
    expect(card).toContain('This model is `openai-community/gpt2` (gpt2');
    expect(card).not.toContain('607a30d7');
    // and the default output folder is named for it too (tester EP: ./607a30d7…-ffmerge)
    expect(defaultOut(snapshot, '-ffmerge')).toBe('gpt2-ffmerge');
    expect(defaultOut('/models/llama-stories260k', '-ffmerge')).toBe('llama-stories260k-ffmerge');
  });

  it('a name holding backticks stays one piece of inline code', () => {
    expect(inlineCode('plain')).toBe('`plain`');
    expect(inlineCode('a`b')).toBe('`` a`b ``');
    expect(inlineCode('x``y`')).toBe('``` x``y` ```');
    expect(modelCard({ ...report('gpt2'), model: '/m/my`model' }, 'tied', { dir: '/out/m', config: { model_type: 'gpt2' } })).toContain('This model is `` my`model `` (gpt2');
  });
});
afterAll(() => removeSyntheticDirs());
