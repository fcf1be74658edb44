/**
 * Where the exported graph's weights come from: a checkpoint (tied or not, read through CheckpointReader),
 * optionally with replacement tensors and extra ties (what compress hands to the checkpoint writer). Every
 * logical tensor name resolves to the tensor that stores it, and each stored tensor becomes ONE initializer,
 * however many nodes use it: that is how a merged window's shared FF reaches the runtime as one copy.
 */
import { FfmergeError, showValue } from '../../errors';
import { CheckpointReader, asStored, checkAddedTies, checkReplacement, type TieMap } from '../../checkpoint/ties';
import { DT, type Graph } from './graph';

export type WeightDType = 'fp32' | 'fp16';

export interface WeightSourceOptions {
  /** Replacement tensors by name, float32, in the stored layout and shape of the tensor they replace. */
  replace?: Map<string, Float32Array> | undefined;
  /** Extra ties, tied name → stored name (the merge's), on top of those the checkpoint already has. */
  ties?: TieMap | undefined;
  dtype?: WeightDType | undefined;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export class ExportWeights {
  /** Stored tensor id → graph value holding it as float32. */
  private readonly values = new Map<string, string>();
  /** Logical names served, and the stored id each resolved to. */
  readonly uses = new Map<string, string>();
  private readonly replace: Map<string, Float32Array>;
  private readonly ties: TieMap;
  readonly dtype: WeightDType;

  private constructor(
    readonly reader: CheckpointReader,
    opts: WeightSourceOptions,
  ) {
    ({ replace: this.replace, ties: this.ties } = asStored(reader, opts.replace, opts.ties));
    this.dtype = opts.dtype ?? 'fp32';
    checkAddedTies(reader, this.ties);
    // a replacement is looked up by the names the graph reads: one naming no tensor was dropped unsaid
    for (const name of this.replace.keys()) {
      if (!reader.has(name)) throw new FfmergeError('TENSOR_NOT_FOUND', `replace names tensor "${name}", which the checkpoint in ${reader.dir} does not hold`);
    }
  }

  static async open(dir: string, opts: WeightSourceOptions = {}): Promise<ExportWeights> {
    if (opts.dtype !== undefined && opts.dtype !== 'fp32' && opts.dtype !== 'fp16') {
      throw new FfmergeError('INVALID_ARGUMENT', `ONNX weight dtype must be fp32 or fp16 (got ${showValue(opts.dtype)})`);
    }
    const reader = await CheckpointReader.open(dir);
    try {
      return new ExportWeights(reader, opts);
    } catch (e) {
      await reader.close();
      throw e;
    }
  }

  /**
   * The same source for another graph of the export (an encoder–decoder's encoder and decoder files): each
   * graph needs its own initializers, so values and uses start empty; the reader stays shared (closed once).
   */
  forGraph(): ExportWeights {
    return new ExportWeights(this.reader, { replace: this.replace, ties: this.ties, dtype: this.dtype });
  }

  close(): Promise<void> {
    return this.reader.close();
  }

  /** The name the checkpoint stores `name` under, trying it without the family's optional prefix too. */
  private present(name: string, optionalPrefix?: string): string {
    if (this.reader.has(name)) return name;
    if (optionalPrefix && name.startsWith(optionalPrefix) && this.reader.has(name.slice(optionalPrefix.length))) {
      return name.slice(optionalPrefix.length);
    }
    throw new FfmergeError('TENSOR_NOT_FOUND', `the checkpoint in ${this.reader.dir} is missing tensor "${name}"`);
  }

  /**
   * The graph value holding tensor `name` as float32, of stored shape `shape`. Names that resolve to the same
   * stored tensor (ties) get the same value: one initializer, one Cast for fp16.
   */
  use(g: Graph, name: string, shape: number[], optionalPrefix?: string): string {
    const real = this.present(name, optionalPrefix);
    const key = this.ties[real] ?? real;
    // a replacement names the tensor it replaces; a tied name without one reads its stored tensor
    const id = this.replace.has(key) ? key : this.replace.has(real) ? real : this.reader.resolve(key);
    const info = this.reader.info(id);
    if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
      throw new FfmergeError('SHAPE_MISMATCH', `tensor "${name}" has shape ${fmt(info.shape)}, but the config implies ${fmt(shape)}`);
    }
    this.uses.set(name, id);
    const hit = this.values.get(id);
    if (hit) return hit;
    const data = this.replace.get(id);
    if (data) checkReplacement(id, data, shape);
    const stored = g.weight({
      name: id,
      dims: shape,
      elemType: this.dtype === 'fp16' ? DT.FLOAT16 : DT.FLOAT,
      read: data ? async () => data : () => this.reader.readF32(id),
    });
    // fp16 weights are stored half size and computed in float32: one Cast per stored tensor, which
    // onnxruntime folds into one float32 constant at load, still shared by every consumer.
    // (in the root graph, so a tensor first met inside an If branch can be read outside it too)
    const value = this.dtype === 'fp16' ? g.root.op('Cast', [stored], { to: DT.FLOAT }, 'w32') : stored;
    this.values.set(id, value);
    return value;
  }
}
