/**
 * Step 1–2 of the method: the calibration data through the base model, and the Pearson correlation of the
 * FF hidden units of exactly the (anchor, layer) pairs the candidate windows need.
 *
 * Where every pair's fp64 sums fit PAIRS_MEMORY_BYTES, one forward pass per batch feeds them all inside the
 * native job, and no activation reaches JS (batchMajorCorrelations).
 *
 * At LLM widths one fp64 d_ff × d_ff accumulator per pair (0.5–1.6 GB) times every pair does not fit. There the
 * main stack runs layer-major (layerMajorCorrelations): all calibration rows go through layer 0, then layer 1,
 * ..., keeping the hidden states of every row and the FF pre-activations of only the layers a later pair still
 * needs, each in RAM up to its budget and on disk past it. Pair (a, l) is accumulated while layer l runs and
 * finalized right after, into the matrix or only the alignment permutation (`keep`).
 *
 * The numbers are those of the batch-major pass: each pair sees the batches in the same order, and the
 * accumulator's sums do not depend on which other pairs are open. Encoder stacks are small and always run
 * batch-major.
 */
import { FfmergeError } from '../errors';
import type { JobOptions, Progress } from '../native/job';
import { permutationFromCorrelation } from '../native/assignment';
import { CorrelationAccumulator } from '../native/correlation';
import type { ForwardInput, Model, StackName } from '../model/model';
import { stackSpecOf } from './align';
import { type BatchStore, openBatchStore } from './spill';

/**
 * RAM for the anchors' pre-activations kept by the layer-major pass (tokens × d_ff × 4 bytes a layer: 126 MB
 * for 10k tokens at GPT-2 small's width); layers past it are spilled to disk. With STATE_MEMORY_BYTES for the
 * hidden states, the pass's memory does not grow with the calibration size.
 */
export const FEATURE_MEMORY_BYTES = 128 * 2 ** 20;

/**
 * RAM for the hidden states the layer-major pass carries from one layer to the next (tokens × d × 4 bytes, held
 * twice while a layer runs; for an encoder–decoder model, the encoder's output too). Past it they go to disk.
 * The default calibration (10,240 tokens) stays in RAM up to d ≈ 6,500.
 */
export const STATE_MEMORY_BYTES = 2 ** 29;

/**
 * RAM for the all-pairs pass (batchMajorCorrelations): every pair's fp64 sums, and a batch's pre-activations
 * of the layers they use with the accumulator's copy of a block of them. Past it, the layer-major pass, whose
 * stores may hold FEATURE_MEMORY_BYTES + STATE_MEMORY_BYTES. gpt2-sotu's 27 pairs of k = 4 take 157 MB.
 */
export const PAIRS_MEMORY_BYTES = 256 * 2 ** 20;

/** What is kept of each finalized pair: the correlation matrix, or the alignment permutation only. */
export type KeepCorrelations = 'matrix' | 'permutation';

interface PairResult {
  matrix?: Float32Array;
  perm?: Int32Array;
}

/**
 * The correlation matrices and alignment permutations of layer pairs, computed layer-major from one calibration
 * pass (features.ts): each pair's float64 sums are freed once it is reduced to what the merge methods need.
 */
export class PairCorrelations {
  private readonly results = new Map<string, PairResult>();

  constructor(
    readonly tokens: number,
    readonly dFF: number,
  ) {}

  /** @internal Filled by the collection. */
  set(anchor: number, layer: number, r: PairResult): void {
    this.results.set(`${anchor},${layer}`, r);
  }

  private result(anchor: number, layer: number): PairResult {
    const r = this.results.get(`${anchor},${layer}`);
    if (!r) throw new Error(`correlation (${anchor}, ${layer}) was not collected`);
    return r;
  }

  /** Pearson correlation [dFF, dFF]: unit i of the anchor vs unit j of `layer` (when matrices were kept). */
  async get(anchor: number, layer: number, _opts: JobOptions = {}): Promise<Float32Array> {
    const r = this.result(anchor, layer);
    if (!r.matrix) {
      throw new FfmergeError('INVALID_STATE', `only the alignment permutation of correlation (${anchor}, ${layer}) was kept (keep: 'permutation'); use permutation()`);
    }
    return r.matrix;
  }

  /** The permutation aligning `layer` to the anchor (maximum total correlation), computed once per pair. */
  async permutation(anchor: number, layer: number, opts: JobOptions = {}): Promise<Int32Array> {
    const r = this.result(anchor, layer);
    r.perm ??= await permutationFromCorrelation(r.matrix!, this.dFF, { signal: opts.signal });
    return r.perm;
  }
}

/** One calibration forward batch: the model's input and, optionally, which main-stack positions are features. */
export interface CalibrationBatch {
  input: ForwardInput;
  /** Main-stack feature positions [batch, seq] (default: input.attentionMask; encoder features = encoderMask). */
  featureMask?: Uint8Array;
}

export interface CollectOptions extends JobOptions {
  /** What to keep of each pair (default 'matrix'). */
  keep?: KeepCorrelations | undefined;
  /**
   * RAM for the features: the all-pairs pass runs where it fits (default PAIRS_MEMORY_BYTES); past it, the
   * layer-major pass keeps anchor pre-activations in it (default FEATURE_MEMORY_BYTES) and spills the rest to
   * disk. 0: layer-major, everything spilled.
   */
  memoryBytes?: number | undefined;
  /** RAM for the hidden states carried between layers (default STATE_MEMORY_BYTES); past it, on disk. */
  stateMemoryBytes?: number | undefined;
  /** Folder for spill files (default os.tmpdir()). */
  spillDir?: string | undefined;
}

/** Frees a pair's sums after an abort or error; one still held by an aborted job winding down is BUSY. */
function releaseIdle(acc: CorrelationAccumulator, p: number): void {
  try {
    acc.release(p);
  } catch {
    // BUSY: the collector frees it
  }
}

/** A plain view in this realm (the addon's arrays may come from another realm, e.g. under jest), no copy. */
function plain(x: Float32Array): Float32Array {
  return x instanceof Float32Array ? x : new Float32Array((x as Float32Array).buffer, (x as Float32Array).byteOffset, (x as Float32Array).length);
}

/**
 * What is kept of pair p, whose sums are then freed: its correlation matrix, or only the alignment
 * permutation, computed in the job that finalizes it (the d_ff² matrix never reaches JS).
 */
async function keepOf(acc: CorrelationAccumulator, p: number, keep: KeepCorrelations, opts: JobOptions): Promise<PairResult> {
  const job = { signal: opts.signal, release: true };
  return keep === 'matrix' ? { matrix: await acc.finalize(p, job) } : { perm: await acc.alignment(p, job) };
}

/** What a pair's finalization makes, as its progress detail says it. */
const keptLabel = (keep: KeepCorrelations) => (keep === 'matrix' ? 'correlations' : 'alignment');

/**
 * The main stack's pairs, layer-major (see the file comment). Progress counts (layer, batch) steps.
 * An abort stops it between (or inside) steps with ABORTED; the pairs in flight are released.
 */
async function layerMajorCorrelations(
  model: Model,
  batches: CalibrationBatch[],
  pairs: [number, number][],
  keep: KeepCorrelations,
  opts: CollectOptions,
): Promise<PairCorrelations> {
  const stack = model.mainStack;
  const { dFF, layers: L } = stackSpecOf(model, stack);
  // lastUse[l]: the layer whose run closes the last pair that needs l (−1: no pair does)
  const lastUse: number[] = Array(L).fill(-1) as number[];
  const closing = new Map<number, [number, number][]>();
  for (const [a, b] of pairs) {
    const hi = Math.max(a, b);
    for (const l of [a, b]) lastUse[l] = Math.max(lastUse[l]!, hi);
    closing.set(hi, [...(closing.get(hi) ?? []), [a, b]]);
  }
  const top = Math.max(...pairs.map(([a, b]) => Math.max(a, b)));
  const acc = CorrelationAccumulator.inFlight(Array(L).fill(dFF) as number[]);
  // the states entering the running layer (`hidden`) and those leaving it (`next`); the encoder's output, once
  const rows = batches.reduce((n, b) => n + b.input.batch * b.input.seq, 0);
  const encoderRows = batches.reduce((n, b) => n + b.input.batch * (b.input.encoderSeq ?? 0), 0);
  const d = model.spec.dModel;
  const statesInRam = 4 * d * (2 * rows + encoderRows) <= (opts.stateMemoryBytes ?? STATE_MEMORY_BYTES);
  const states = (label: string) => openBatchStore(statesInRam ? 'ram' : 'disk', label, opts.spillDir);
  let hidden: BatchStore | undefined;
  let encoderHidden: BatchStore | undefined;
  // the stores a layer is filling, until they take the place of the ones above (closed on an error too)
  let next: BatchStore | undefined;
  let encoderOut: BatchStore | undefined;
  // layer → per-batch pre-activations, while a later pair needs them; in RAM up to the budget, else on disk
  const kept = new Map<number, BatchStore>();
  const budget = opts.memoryBytes ?? FEATURE_MEMORY_BYTES;
  // an upper bound on a layer's bytes (padding rows are dropped later), so the budget is never exceeded
  const layerBytes = rows * dFF * 4;
  const inRam = () => [...kept.values()].filter((k) => k.kind === 'ram').length * layerBytes;
  const results: [number, number, PairResult][] = [];
  let tokens = 0;
  let counted = false; // feature rows are the same at every layer: counted at the first captured one
  let done = 0;
  // a (layer, batch) step each, and one per pair finalized (d_ff² work after the layer's last batch)
  const total = (top + 1) * batches.length + pairs.length;
  const open: number[] = [];
  try {
    for (let l = 0; l <= top; l++) {
      const closes = closing.get(l) ?? [];
      const capture = lastUse[l]! >= l;
      for (const [a, b] of closes) open.push(acc.addPair(a, b));
      const needed = new Set(closes.flat());
      const keepThis = lastUse[l]! > l;
      const fresh = keepThis ? await openBatchStore(inRam() + layerBytes <= budget ? 'ram' : 'disk', `features-${l}`, opts.spillDir) : undefined;
      if (fresh) kept.set(l, fresh);
      next = await states(`states-${l + 1}`);
      for (const [bi, b] of batches.entries()) {
        const enc = encoderHidden ? await encoderHidden.get(bi) : undefined;
        const input: ForwardInput = { ...b.input, ...(enc ? { encoderHidden: enc } : {}) };
        const r = await model.forward(input, {
          output: 'hidden',
          fromLayer: l,
          toLayer: l + 1,
          ...(l > 0 ? { hidden: await hidden!.get(bi), stage: true } : {}),
          ...(capture ? { captureFF: [l] } : {}),
          ...(b.featureMask ? { featureMask: b.featureMask } : {}),
          signal: opts.signal,
        });
        await next.put(plain(r.hidden));
        if (r.encoderHidden && !encoderHidden) {
          encoderOut ??= await states('encoder-states');
          await encoderOut.put(plain(r.encoderHidden));
        }
        if (capture) {
          const ff = plain(r.ff!.get(l)!);
          const rows = ff.length / dFF;
          if (open.length > 0 && rows > 0) {
            // only the layers of the pairs closing here, staged: nothing else holds these arrays meanwhile
            const layers: (Float32Array | null)[] = [];
            for (const m of acc.dims.keys()) layers.push(m === l ? ff : needed.has(m) ? await kept.get(m)!.get(bi) : null);
            await acc.add(layers, rows, { signal: opts.signal, stage: true });
          }
          if (fresh) await fresh.put(ff);
          if (!counted) tokens += rows;
        }
        opts.onProgress?.({ phase: 'features', done: ++done, total });
      }
      if (capture) counted = true;
      // the states entering this layer are spent; those leaving it enter the next
      await hidden?.close();
      hidden = next;
      next = undefined;
      if (encoderOut) encoderHidden = encoderOut;
      encoderOut = undefined;
      for (const [k, p] of open.entries()) {
        const [a, b] = closes[k]!;
        opts.onProgress?.({ phase: 'features', done, total, detail: `layers ${a} and ${b}: ${keptLabel(keep)}` });
        // an empty calibration (all padding) leaves nothing to finalize: the pair is absent
        if (acc.pairCount(p) === 0) acc.release(p);
        else results.push([a, b, await keepOf(acc, p, keep, opts)]);
        opts.onProgress?.({ phase: 'features', done: ++done, total });
      }
      open.length = 0;
      for (const [m, st] of [...kept]) {
        if (lastUse[m]! > l) continue;
        await st.close();
        kept.delete(m);
      }
    }
  } finally {
    for (const st of kept.values()) await st.close();
    for (const st of [hidden, encoderHidden, next, encoderOut]) await st?.close();
    for (const p of open) releaseIdle(acc, p);
  }
  const out = new PairCorrelations(tokens, dFF);
  for (const [a, b, r] of results) out.set(a, b, r);
  return out;
}

/**
 * Whether every stack's pairs can be open at once within `budget` bytes: their fp64 sums (d_ff² doubles a
 * pair), a batch's captured pre-activations of the layers they use (rows × d_ff floats a layer) and the
 * accumulator's shifted copy of a block of them (≤ 2,048 rows a layer). Then one pass per batch streams them
 * natively; past it (LLM widths: 0.5–1.6 GB a pair), layer-major.
 */
function allPairsFit(model: Model, batches: CalibrationBatch[], pairs: Map<StackName, [number, number][]>, budget: number): boolean {
  const rows = Math.max(...batches.map((b) => b.input.batch * Math.max(b.input.seq, b.input.encoderSeq ?? 0)));
  let bytes = 0;
  for (const [stack, list] of pairs) {
    const { dFF } = stackSpecOf(model, stack);
    bytes += list.length * dFF * dFF * 8 + new Set(list.flat()).size * (rows + Math.min(rows, 2048)) * dFF * 4;
  }
  return bytes <= budget;
}

/**
 * Every stack's pairs at once, one forward pass per batch up to the last layer a pair uses: the forward job
 * streams the pre-activations into the accumulators (Model.forward's `accumulate`), so no activation reaches
 * JS. The same batches in the same order as the layer-major pass: the same sums.
 */
async function batchMajorCorrelations(
  model: Model,
  batches: CalibrationBatch[],
  pairs: Map<StackName, [number, number][]>,
  keep: KeepCorrelations,
  opts: CollectOptions,
): Promise<{ corr: Map<StackName, PairCorrelations>; rows: Partial<Record<StackName, number>> }> {
  const accs = new Map<StackName, CorrelationAccumulator>();
  for (const [stack, list] of pairs) {
    const { dFF, layers } = stackSpecOf(model, stack);
    accs.set(stack, new CorrelationAccumulator(Array(layers).fill(dFF) as number[], list));
  }
  const mainPairs = pairs.get(model.mainStack) ?? [];
  // the decoder runs no layer when only the encoder's pairs are wanted (the encoder always runs whole)
  const toLayer = mainPairs.length > 0 ? Math.max(...mainPairs.flat()) + 1 : 0;
  const total = batches.length + [...pairs.values()].reduce((n, l) => n + l.length, 0);
  let done = 0;
  // an encoder–decoder model's steps name the stacks the pass feeds
  const fed = model.encoderSpec ? { detail: [...accs.keys()].join(' and ') } : {};
  const finalized = new Map<StackName, Set<number>>([...accs.keys()].map((s) => [s, new Set<number>()]));
  try {
    for (const b of batches) {
      await model.forward(b.input, { output: 'hidden', toLayer, accumulate: Object.fromEntries(accs), ...(b.featureMask ? { featureMask: b.featureMask } : {}), signal: opts.signal });
      opts.onProgress?.({ phase: 'features', done: ++done, total, ...fed });
    }
    const corr = new Map<StackName, PairCorrelations>();
    const rows: Partial<Record<StackName, number>> = {};
    for (const [stack, acc] of accs) {
      const pc = new PairCorrelations(acc.count, acc.dims[0]!);
      const named = model.encoderSpec ? `${stack} ` : '';
      for (const [p, [a, l]] of pairs.get(stack)!.entries()) {
        opts.onProgress?.({ phase: 'features', done, total, detail: `${named}layers ${a} and ${l}: ${keptLabel(keep)}` });
        // an empty calibration (all padding) leaves nothing to finalize: the pair is absent
        if (acc.count > 0) pc.set(a, l, await keepOf(acc, p, keep, opts));
        finalized.get(stack)!.add(p);
        opts.onProgress?.({ phase: 'features', done: ++done, total });
      }
      corr.set(stack, pc);
      rows[stack] = acc.count;
    }
    return { corr, rows };
  } finally {
    // unfinalized sums (up to the whole budget) are freed now, not whenever V8 collects the accumulator
    for (const [stack, acc] of accs) {
      for (let p = 0; p < acc.pairs.length; p++) if (!finalized.get(stack)!.has(p)) releaseIdle(acc, p);
    }
  }
}

/**
 * Features of several stacks: for each stack with pairs, the correlations of exactly those (anchor, layer)
 * pairs. Where all of them fit the memory budget at once, one native pass per batch feeds them all
 * (batchMajorCorrelations: no activation through JS). Past it, the main stack runs layer-major with a few
 * pairs in flight, and an encoder stack (encoder–decoder models, small) is streamed natively by one encoder
 * pass per batch with all its pairs. Stacks whose pair list is empty get nothing. rows = feature rows seen per
 * stack (padding excluded).
 */
export async function collectStackCorrelations(
  model: Model,
  batches: CalibrationBatch[],
  pairs: Map<StackName, [number, number][]>,
  opts: CollectOptions,
): Promise<{ corr: Map<StackName, PairCorrelations>; rows: Partial<Record<StackName, number>> }> {
  const keep = opts.keep ?? 'matrix';
  // the stacks this model has, with pairs: no pass at all where there are none
  const wanted = new Map([...pairs].filter(([stack, list]) => list.length > 0 && model.stacks().includes(stack)));
  if (wanted.size > 0 && batches.length > 0 && allPairsFit(model, batches, wanted, opts.memoryBytes ?? PAIRS_MEMORY_BYTES)) return batchMajorCorrelations(model, batches, wanted, keep, opts);
  const corr = new Map<StackName, PairCorrelations>();
  const rows: Partial<Record<StackName, number>> = {};
  const encPairs = model.encoderSpec ? pairs.get('encoder') ?? [] : [];
  const mainPairs = pairs.get(model.mainStack) ?? [];
  // the main stack's pass counts (layers it runs) × batches: its reports go on from the encoder's
  const mainSteps = mainPairs.length > 0 ? (Math.max(...mainPairs.flat()) + 1) * batches.length + mainPairs.length : 0;
  // the encoder's steps: a pass per batch, then a finalization per pair (layerMajorCorrelations says why)
  const encReports = encPairs.length > 0 ? batches.length + encPairs.length : 0;
  if (encPairs.length > 0) {
    // the encoder (small) streams all its pairs at once, counted with the decoder's pass, which follows
    const report = opts.onProgress;
    const before = report && mainSteps ? { onProgress: (p: Progress) => report({ ...p, total: p.total + mainSteps }) } : {};
    const enc = await batchMajorCorrelations(model, batches, new Map([['encoder', encPairs]]), keep, { ...opts, ...before });
    corr.set('encoder', enc.corr.get('encoder')!);
    rows.encoder = enc.rows.encoder!;
  }
  if (mainPairs.length > 0) {
    const report = opts.onProgress;
    const after = encReports && report ? { onProgress: (p: Progress) => report(p.phase === 'features' ? { ...p, done: p.done + encReports, total: p.total + encReports } : p) } : {};
    const pc = await layerMajorCorrelations(model, batches, mainPairs, keep, { ...opts, ...after });
    corr.set(model.mainStack, pc);
    rows[model.mainStack] = pc.tokens;
  }
  return { corr, rows };
}
