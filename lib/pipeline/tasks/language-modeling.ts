/**
 * Language modelling (decoder-only LMs): calibration features on token blocks, candidates scored by
 * perplexity on validation blocks (lower is better). The base model's states entering every candidate's
 * first changed layer are kept once (PrefixCache), so a candidate starting at layer s runs layers s.. only.
 */
import * as fs from 'node:fs';
import { FfmergeError, groupDigits, showValue } from '../../errors';
import type { FeatureBatch } from '../../data/feature-batches';
import { blocksFrom, fitBlockSize, makeBatches, shortBudgetNote, takeTokens, tokenCount, type Batch } from '../data';
import { nllOf, ppl, PrefixCache } from '../prefix';
import { checkPositiveInts, checkTestBudget, type CompressOptions, type SampledSource, type TokenSource } from '../options';
import { sampleRows } from '../../eval/sample';
import { seededOrder } from '../../data/shuffle';
import { MIN_BLOCK_TOKENS } from '../../data/blocks';
import { isTokenRowFile } from '../../data/token-rows';
import { sameData, sameDataPhrase } from '../../data/same-data';
import { RUN_TOKENS, repeatedTokens, tokenRuns, type TokenRuns } from '../../data/shared-tokens';
import type { Task, TaskKind } from '../task';
import { checkHeldOut } from './sources';
import { runningCount } from '../../native/job';
import { checkOptions, isArrayOf } from '../../arguments';

const LM_DEFAULTS = { calibrationTokens: 10240, validationTokens: 10240, blockSize: 256, batchBlocks: 8 };

/**
 * The search split of a large model (≥ 1B parameters in its layers) when searchTokens is not given: as many
 * validation tokens as keep the whole search to about this many full passes over the validation split. A
 * candidate starting at layer s costs (L − s)/L of a pass per token, so a 7B (32 layers, 31 windows of 2) scores
 * one combination's candidates on ~1/4 of the validation tokens, the default's three on ~1/12 (whole batches at
 * least: one batch, 2,048 tokens, at the defaults). Smaller models search on all of them.
 */
export const LARGE_SEARCH = { minParams: 1e9, passes: 4 };

/** Parameters in the layers of a decoder stack (attention + FF; embeddings and norms left out). */
function layerParams(s: { layers: number; dModel: number; nHeads: number; nKvHeads: number; headDim: number; dFF: number; gatedFF: boolean }): number {
  const attn = 2 * s.dModel * s.nHeads * s.headDim + 2 * s.dModel * s.nKvHeads * s.headDim;
  return s.layers * (attn + (s.gatedFF ? 3 : 2) * s.dModel * s.dFF);
}

/** Search tokens for a large model: `passes` full validation passes spread over candidates starting at `starts`. */
export function largeModelSearchTokens(layers: number, valTokens: number, starts: number[], passes = LARGE_SEARCH.passes): number {
  const cost = starts.reduce((n, s) => n + (layers - s) / layers, 0);
  return cost <= passes ? valTokens : Math.floor((valTokens * passes) / cost);
}

function isTokenSource(v: unknown): v is TokenSource {
  return typeof v === 'string' || isArrayOf(v, (b) => b instanceof Int32Array);
}

/** Most tokens of a file a 'spread' draw cuts into blocks before drawing (64 MB of ids). */
const SPREAD_MAX_TOKENS = 16 * 1024 * 1024;

/**
 * The blocks of a file in a fixed pseudo-random order (seed 1 unless CompressOptions.seed), without a shorter
 * last block, so that taking the leading blocks of the result draws them evenly from the whole file.
 */
function spreadOrder(blocks: Int32Array[], seed = 1): Int32Array[] {
  const pool = blocks.length > 1 && blocks[blocks.length - 1]!.length < blocks[0]!.length ? blocks.slice(0, -1) : blocks;
  return Array.from(seededOrder(pool.length, seed), (i) => pool[i]!);
}

export function isSampledSource(v: unknown): v is SampledSource {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as SampledSource).sample === 'object' && (v as SampledSource).sample !== null;
}

function checkSampled(v: SampledSource, validation: unknown): void {
  checkOptions(v, 'calibration', ['sample']);
  checkOptions(v.sample, 'calibration.sample', ['temperature', 'seed']);
  const { temperature, seed } = v.sample;
  if (temperature !== undefined && !(typeof temperature === 'number' && temperature > 0 && Number.isFinite(temperature))) {
    throw new FfmergeError('INVALID_ARGUMENT', `calibration.sample.temperature must be a positive number (got ${showValue(temperature)})`);
  }
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32)) {
    throw new FfmergeError('INVALID_ARGUMENT', `calibration.sample.seed must be an integer in [0, 2^32) (got ${showValue(seed)})`);
  }
  if (validation === undefined) {
    throw new FfmergeError('INVALID_ARGUMENT', 'calibration sampled from the model needs validation data to choose the window on: give validation (a text or .jsonl file)');
  }
}

/** The token every sampled row starts with: config bos_token_id (a model without one cannot be sampled from). */
function startToken(config: Readonly<Record<string, unknown>>, vocab: number): number {
  const bos = config.bos_token_id;
  if (typeof bos !== 'number' || !Number.isInteger(bos)) {
    throw new FfmergeError('INVALID_ARGUMENT', "calibration sampled from the model needs a start token, and the model's config.json has no bos_token_id: calibrate on a text file instead");
  }
  if (bos < 0 || bos >= vocab) {
    throw new FfmergeError('INVALID_CONFIG', `calibration sampled from the model starts each row with config.json's bos_token_id ${bos}, which is not in the model's vocabulary (${vocab} tokens): fix bos_token_id, or calibrate on a text file instead`);
  }
  return bos;
}

function checkSource(v: unknown, what: string): void {
  if (v === undefined) return;
  if (!isTokenSource(v)) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what} for a language model is a text or .jsonl file, or token blocks (Int32Array[])`);
  }
  if (typeof v === 'string') return;
  if (v.length === 0) throw new FfmergeError('INVALID_ARGUMENT', `${what}: the list of token blocks is empty`);
  const short = v.findIndex((b) => b.length < MIN_BLOCK_TOKENS);
  if (short >= 0) throw new FfmergeError('INVALID_ARGUMENT', `${what} block ${short} has ${v[short]!.length} token(s): a block needs at least ${MIN_BLOCK_TOKENS} (one next-token prediction)`);
}

/**
 * The sources a block size does not apply to, as [split, why]: token-id rows (each row one sequence, never
 * re-cut) and blocks the caller already cut are used as they are. Text is cut into blocks of blockSize and
 * sampled calibration rows are blockSize long, so those take it. Validation without a file of its own is the
 * calibration's rest and goes with it. A file that does not exist counts as text: blocksFrom says it is missing.
 */
async function sourcesUsedAsIs(o: CompressOptions): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const what of ['calibration', 'validation', 'test'] as const) {
    const src = o[what];
    if (Array.isArray(src)) out.push([what, 'given as token blocks already cut']);
    else if (typeof src === 'string' && fs.existsSync(src) && (await isTokenRowFile(src))) out.push([what, `file ${src} holds token-id rows`]);
  }
  return out;
}

/**
 * Whether any data is cut (or sampled) at the block size. A blockSize given when none is would be ignored, so
 * it is refused. A mix (text calibration, token-id validation) takes it: it sets the calibration contexts, the
 * rows stay as they are, and the report's notes say which splits were not cut.
 */
async function blockSizeApplies(o: CompressOptions): Promise<{ applies: boolean; asIs: Array<[string, string]> }> {
  const asIs = await sourcesUsedAsIs(o);
  const given = (['calibration', 'validation', 'test'] as const).filter((w) => o[w] !== undefined).length;
  const applies = asIs.length < given;
  if (o.blockSize !== undefined && !applies) {
    throw new FfmergeError(
      'OPTION_NOT_APPLICABLE',
      `blockSize (--block-size) cuts text into blocks; ${asIs.map(([w, why]) => `${w} ${why}, each used as it is`).join('; ')}: give no blockSize`,
    );
  }
  return { applies, asIs };
}

/**
 * Refuses a split nearly all of whose tokens (REPEATED_REFUSED) lie in blocks that repeat an earlier split's text:
 * the same data given twice. Fewer such blocks (overlapping data, duplicates within it) are noted: the check is
 * by content, so it refuses only what cannot be anything else.
 */
const REPEATED_REFUSED = 0.9;

async function checkRepeats(what: 'validation' | 'test', blocks: readonly Int32Array[], earlier: readonly (readonly [string, TokenRuns, boolean])[], notes: string[], signal?: AbortSignal): Promise<void> {
  const total = tokenCount(blocks as Int32Array[]);
  for (const [other, runs, refuse] of earlier) {
    const rep = await repeatedTokens(blocks, runs, signal);
    if (rep.blocks === 0) continue;
    const share = `${rep.blocks} of the ${blocks.length} ${what} blocks (${groupDigits(rep.tokens)} of ${groupDigits(total)} tokens) repeat text of the ${other} blocks`;
    // `refuse` false: blocks of one file read apart (validation after the calibration budget), disjoint by
    // construction; repeats there are duplicates within the data, noted whatever their share
    if (refuse && rep.tokens >= REPEATED_REFUSED * total) {
      const why = what === 'test' ? 'the test number would not be held out' : 'candidates would be scored on the text that shaped them';
      const fix = what === 'test' ? 'give test data the run neither calibrates nor validates on' : 'give other validation data, or none to validate on the calibration data after the calibration budget';
      throw new FfmergeError('INVALID_ARGUMENT', `${share}: the same data given twice (as text and as token-id rows, or as two copies), so ${why}; ${fix}`);
    }
    notes.push(`${share} (most of their ${RUN_TOKENS}-token runs): ${what === 'test' ? 'that part of the test number is not held out' : 'those blocks score text that shaped the merge'}; overlapping files, or duplicates within the data?`);
  }
}

export const languageModeling: TaskKind = {
  name: 'language-modeling',
  description: 'perplexity of next-token prediction (lower is better)',
  optionKeys: ['calibration', 'validation', 'test', 'calibrationTokens', 'validationTokens', 'searchTokens', 'testTokens', 'draw', 'blockSize', 'batchBlocks'],
  accepts: (s) => s.stacks.length === 1 && s.stacks[0]!.name === 'decoder',
  async check(o) {
    if (o.calibration === undefined) throw new FfmergeError('INVALID_ARGUMENT', 'a language model is calibrated on text: give calibration (a text or .jsonl file, or token blocks)');
    if (isSampledSource(o.calibration)) checkSampled(o.calibration, o.validation);
    else checkSource(o.calibration, 'calibration');
    for (const k of ['validation', 'test'] as const) checkSource(o[k], k);
    checkTestBudget(o, 'testTokens', { budget: '--test-tokens', test: '--test' });
    checkPositiveInts(o, ['calibrationTokens', 'validationTokens', 'searchTokens', 'testTokens', 'batchBlocks']);
    // candidates are scored on the first validation tokens: a larger search budget was cut to it, unsaid
    const valTokens = o.validationTokens ?? LM_DEFAULTS.validationTokens;
    if (o.searchTokens !== undefined && o.searchTokens > valTokens) {
      throw new FfmergeError('INVALID_ARGUMENT', `searchTokens (--search-tokens) ${o.searchTokens} is more than the validation budget ${valTokens} (validationTokens, --validation-tokens${o.validationTokens === undefined ? ', its default' : ''}): candidates are scored on validation tokens; give at most ${valTokens}, or a larger validation budget`);
    }
    if (o.draw !== undefined && o.draw !== 'head' && o.draw !== 'spread') throw new FfmergeError('INVALID_ARGUMENT', `draw must be 'head' or 'spread' (got ${showValue(o.draw)})`);
    if (o.blockSize !== undefined && (!Number.isInteger(o.blockSize) || o.blockSize < MIN_BLOCK_TOKENS)) {
      throw new FfmergeError('INVALID_ARGUMENT', `blockSize (--block-size) must be an integer ≥ ${MIN_BLOCK_TOKENS} (got ${showValue(o.blockSize)})`);
    }
    // before the model is loaded: a block size with nothing to cut is refused now, not after minutes of loading
    if (o.blockSize !== undefined) await blockSizeApplies(o);
    // A validation file is read from its start, as calibration is: the calibration file again would score the
    // candidates on the very text that shaped them (its first blocks, with either draw).
    if (Array.isArray(o.calibration) && o.calibration === o.validation) {
      throw new FfmergeError('INVALID_ARGUMENT', 'validation is the very token blocks given as calibration, so candidates would be scored on the blocks that shaped them: give other blocks, or none to validate on the calibration blocks after the calibration budget');
    }
    const same = typeof o.calibration === 'string' && typeof o.validation === 'string' ? await sameData(o.calibration, o.validation, { text: true }) : undefined;
    if (same) {
      throw new FfmergeError(
        'INVALID_ARGUMENT',
        `the validation file ${sameDataPhrase(same, 'calibration')}, so candidates would be scored on the text that shaped them: give a different validation file, or none to validate on the calibration file's text after the calibration budget`,
      );
    }
    const test = o.test;
    if (typeof test === 'string') {
      await checkHeldOut([['calibration', o.calibration], ['validation', o.validation]], async (src) => (typeof src === 'string' ? sameData(src, test, { text: true }) : undefined), { test: 'file', give: 'text' });
    }
  },
  async create({ model, dir, options: o }, job) {
    const spec = model.spec;
    const blockSize = fitBlockSize(o.blockSize, LM_DEFAULTS.blockSize, spec.maxPositions, 'blockSize (--block-size)');
    const { applies: cut, asIs } = await blockSizeApplies(o);
    const batchBlocks = o.batchBlocks ?? LM_DEFAULTS.batchBlocks;
    const calTokens = o.calibrationTokens ?? LM_DEFAULTS.calibrationTokens;
    const valTokens = o.validationTokens ?? LM_DEFAULTS.validationTokens;
    const spread = o.draw === 'spread';
    const notes: string[] = [];
    // the report's blockSize is that of the splits cut at it; a split that was not is named (where text is cut
    // or a block size was given)
    const textCut = (['calibration', 'validation', 'test'] as const).some((w) => typeof o[w] === 'string' && !asIs.some(([x]) => x === w));
    if (cut && (textCut || o.blockSize !== undefined)) for (const [what, why] of asIs) notes.push(`${what}: used as it is, not cut into blocks of ${blockSize} (${why})`);
    // the default cut to a short model's positions, said
    if (textCut && o.blockSize === undefined && blockSize < LM_DEFAULTS.blockSize) notes.push(`text is cut into blocks of ${blockSize} tokens, the model's positions (the default block size, ${LM_DEFAULTS.blockSize}, is longer)`);
    // whether a scored split (validation, or calibration's rest; test) was text cut at blockSize, which `eval
    // --block-size` reproduces (sampled calibration takes blockSize too, but is not scored)
    const asIsSplits = new Set(asIs.map(([w]) => w));
    const scoredText = (
      [
        [o.validation === undefined ? 'calibration' : 'validation', o.validation ?? o.calibration],
        ['test', o.test],
      ] as const
    ).some(([w, src]) => typeof src === 'string' && !asIsSplits.has(w));
    // one 'tokenize' count for every file read, one after the other, so the phase never counts back
    const tokenized = runningCount('tokenize', job.onProgress);
    /**
     * Blocks of a source within a budget; `drawn` sources (calibration, validation) follow o.draw, test never.
     * With 'spread', a note for `noted` (what the blocks are drawn for) says what they were drawn from.
     */
    const read = async (src: TokenSource, what: string, maxTokens: number, drawn = true, noted = what) => {
      const blocks = await blocksFrom(src, {
        blockSize,
        what,
        tokenizerDir: dir,
        // spread: the whole file (up to a cap) is cut, then drawn from in a fixed order
        maxTokens: spread && drawn ? SPREAD_MAX_TOKENS : maxTokens,
        signal: job.signal,
        onProgress: tokenized.onProgress,
        vocab: spec.vocab,
        ...(spec.maxPositions > 0 ? { maxLength: spec.maxPositions } : {}),
      });
      tokenized.next();
      // a budget past the data takes all of it: the report says so (a spread draw reads up to its cap, whatever the budget)
      const held = tokenCount(blocks);
      const capped = spread && drawn && held >= SPREAD_MAX_TOKENS;
      const short = shortBudgetNote(held, maxTokens, 'its budget');
      if (short) notes.push(`${noted}: ${capped ? `the first ${groupDigits(held)} tokens of the file, as far as a spread draw reads, fewer than the ${groupDigits(maxTokens)} its budget asks` : short}`);
      if (!spread || !drawn) return blocks;
      const across = typeof src !== 'string' ? 'all the blocks given' : tokenCount(blocks) >= SPREAD_MAX_TOKENS ? `the first ${groupDigits(SPREAD_MAX_TOKENS)} tokens of the file` : 'the whole file';
      notes.push(`${noted}: blocks drawn across ${across} (${o.seed === undefined ? 'fixed seeded order' : `seeded order, seed ${o.seed}`})`);
      return spreadOrder(blocks, o.seed);
    };
    if (isSampledSource(o.calibration)) {
      const { temperature = 1, seed = o.seed ?? 1 } = o.calibration.sample;
      notes.push(`calibration: sampled from the model (temperature ${temperature}, seed ${seed})`);
    }
    // validation without a file of its own is the calibration data after the calibration budget: with 'spread',
    // the blocks that follow calibration's in the drawn order, so one note says both were drawn, disjoint
    const ownValidation = o.validation !== undefined;
    const calAll = isSampledSource(o.calibration)
      ? await sampleRows(model, {
          rows: Math.max(1, Math.round(calTokens / blockSize)),
          length: blockSize,
          startToken: startToken(model.config, model.spec.vocab),
          ...o.calibration.sample,
          seed: o.calibration.sample.seed ?? o.seed ?? 1,
          signal: job.signal,
          onProgress: job.onProgress,
        })
      : await read(
          o.calibration as TokenSource,
          'calibration',
          // Each budget takes whole blocks, at least one. Read together, budgets inside one block (100 + 100
          // of blocks of 256) would read one block, all calibration's: validation gets room for one block.
          ownValidation ? calTokens : calTokens + Math.max(valTokens, blockSize),
          true,
          ownValidation ? 'calibration' : 'calibration and validation',
        );
    const calBlocks = takeTokens(calAll, calTokens);
    let valBlocks: Int32Array[];
    if (ownValidation) {
      valBlocks = takeTokens(await read(o.validation as TokenSource, 'validation', valTokens), valTokens);
    } else {
      let rest = calAll.slice(calBlocks.length);
      if (rest.length === 0 && typeof o.calibration === 'string' && !spread) {
        // token-id rows longer than a block: the read stopped inside calibration's rows; one row more
        rest = (await read(o.calibration, 'calibration', tokenCount(calBlocks) + 1, true, 'calibration and validation')).slice(calBlocks.length);
      }
      if (rest.length === 0) {
        // a budget the caller gave that leaves nothing is a usage error; the default's, the data's
        throw new FfmergeError(o.calibrationTokens === undefined ? 'INVALID_DATA' : 'INVALID_ARGUMENT', `no validation data: the calibration file holds ${calBlocks.length} block(s), all taken by the calibration budget; give a validation file (--valid), more calibration text than the calibration budget, or a smaller budget (calibrationTokens, --calibration-tokens: ${calTokens} now)`);
      }
      valBlocks = takeTokens(rest, valTokens);
      notes.push(spread ? 'validation: the blocks after the calibration blocks in that order (disjoint from them)' : 'validation: the calibration data after the calibration budget');
    }
    const testBlocks = o.test !== undefined ? takeTokens(await read(o.test as TokenSource, 'test', o.testTokens ?? Infinity, false), o.testTokens ?? Infinity) : undefined;
    // The same data in two forms (text and token-id rows, two copies, blocks passed in) is not one file, so
    // check() cannot see it: its tokens can. Mostly repeated is refused; a few repeated blocks are noted.
    const calRuns = isSampledSource(o.calibration) ? undefined : await tokenRuns(calBlocks, job.signal);
    if (calRuns) await checkRepeats('validation', valBlocks, [['calibration', calRuns, ownValidation]], notes, job.signal);
    if (testBlocks) await checkRepeats('test', testBlocks, [...(calRuns ? [['calibration', calRuns, true] as const] : []), ['validation', await tokenRuns(valBlocks, job.signal), true]], notes, job.signal);
    const calibration: FeatureBatch[] = makeBatches(calBlocks, batchBlocks).map((b) => ({ input: b, featureRows: b.batch * b.seq }));
    // Candidates are scored on the first `searchCount` validation batches (the prefix cache holds the states of
    // these batches). A search budget's blocks get batches of their own, so those batches are exactly its blocks
    // (a budget of 2 blocks is scored on 2, not on the 8 of a whole batch); with no budget that is every batch.
    let searchBlocks = takeTokens(valBlocks, o.searchTokens ?? tokenCount(valBlocks));
    const searchBatches = makeBatches(searchBlocks, batchBlocks);
    const val: Batch[] = [...searchBatches, ...makeBatches(valBlocks.slice(searchBlocks.length), batchBlocks)];
    let searchCount = searchBatches.length;
    const test = testBlocks ? makeBatches(testBlocks, batchBlocks) : undefined;
    let cache: PrefixCache | undefined;
    const task: Task = {
      metric: { name: 'perplexity', higherIsBetter: false },
      calibration,
      data: {
        unit: 'tokens',
        calibration: tokenCount(calBlocks),
        validation: tokenCount(valBlocks),
        search: tokenCount(searchBlocks),
        ...(testBlocks ? { test: tokenCount(testBlocks) } : {}),
        // all token-id rows: no block size was used, none is reported
        ...(cut ? { blockSize, textScored: scoredText } : {}),
        notes,
      },
      async prepare(starts, opts) {
        if (o.searchTokens === undefined && layerParams(spec) >= LARGE_SEARCH.minParams) {
          // A budget of its own choosing: rounded up to whole batches (full batches cost what part ones do), and
          // the report gives the tokens of those batches, the ones scored.
          const n = Math.max(blockSize, largeModelSearchTokens(spec.layers, tokenCount(valBlocks), starts));
          searchCount = makeBatches(takeTokens(valBlocks, n), batchBlocks).length;
          searchBlocks = valBlocks.slice(0, val.slice(0, searchCount).reduce((s, b) => s + b.batch, 0));
          task.data.search = tokenCount(searchBlocks);
          if (searchBlocks.length < valBlocks.length) notes.push(`search: the first ${groupDigits(task.data.search!)} validation tokens (a large model: about ${LARGE_SEARCH.passes} validation passes in all)`);
        }
        cache = await PrefixCache.build(model, val, [0, ...starts], opts);
      },
      dispose: async () => cache?.dispose(),
      search: async (m, start, opts) => ppl(await nllOf(m, val, { ...opts, ...(cache ? { cache } : {}), fromLayer: start, limit: searchCount })),
      validate: async (m, start, opts) => ppl(await nllOf(m, val, { ...opts, ...(cache ? { cache } : {}), fromLayer: start })),
      ...(test ? { test: async (m, opts) => ppl(await nllOf(m, test, opts)) } : {}),
    };
    return task;
  },
};
