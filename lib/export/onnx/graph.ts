/**
 * A small ONNX graph under construction: nodes, graph inputs/outputs, constants and weight initializers.
 * Weight initializers carry their data lazily (read from the checkpoint only when the file is written), so a
 * graph can be planned, checked and sized before any tensor is loaded. serialize.ts turns it into protobuf.
 */
import { FfmergeError } from '../../errors';

/** TensorProto.DataType values ffmerge writes (onnx.proto). */
export const DT = { FLOAT: 1, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;
export type ElemType = (typeof DT)[keyof typeof DT];

/** A graph input/output dimension: a fixed size or a symbolic name ("batch_size"). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  elemType: ElemType;
  /** Undefined: shape not stated (If branch outputs, whose lengths differ between the branches). */
  shape?: Dim[];
}

/** Attribute values: integers and integer lists, floats (wrapped so 1.0 is not read as an int), strings, subgraphs (If branches). */
export type AttrValue = number | number[] | string | { float: number } | { graph: Graph };

export interface GraphNode {
  op: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

/** A weight tensor: float32 values in stored order, fetched when the model is serialized. */
export interface WeightInitializer {
  kind: 'weight';
  name: string;
  dims: number[];
  /** Element type in the file (FLOAT or FLOAT16; the graph casts FLOAT16 to FLOAT once per tensor). */
  elemType: ElemType;
  read: () => Promise<Float32Array>;
}

/** A small constant (shapes, axes, scalars) held in memory. */
export interface ConstInitializer {
  kind: 'const';
  name: string;
  dims: number[];
  elemType: ElemType;
  values: number[];
}

export type Initializer = WeightInitializer | ConstInitializer;

export class Graph {
  readonly nodes: GraphNode[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  /** Only the root graph's are used: a subgraph's weights and constants go to its root, read from outer scope. */
  readonly initializers: Initializer[] = [];
  /** The model's main graph (this one, unless this is a branch made by sub()). */
  readonly root: Graph;
  private readonly names = new Set<string>();
  private readonly consts = new Map<string, string>();
  private counter = 0;

  constructor(
    readonly name: string,
    parent?: Graph,
  ) {
    this.root = parent ? parent.root : this;
  }

  /**
   * A branch graph (an If node's then/else): its own nodes and outputs, while names, weights and constants
   * belong to the root, so one tensor stays one initializer whichever branch reads it.
   */
  sub(name: string): Graph {
    return new Graph(name, this);
  }

  /** A value name not used yet (in the whole model), derived from `hint`. */
  fresh(hint: string): string {
    const r = this.root;
    let n = hint;
    while (r.names.has(n)) n = `${hint}_${++r.counter}`;
    r.names.add(n);
    return n;
  }

  /** Claims an exact name (graph inputs/outputs, initializers); a clash is a bug in the builder. */
  claim(name: string): string {
    const r = this.root;
    if (r.names.has(name)) throw new FfmergeError('INVALID_ARGUMENT', `ONNX graph: the name "${name}" is used twice`);
    r.names.add(name);
    return name;
  }

  input(name: string, elemType: ElemType, shape: Dim[]): string {
    this.inputs.push({ name: this.claim(name), elemType, shape });
    return name;
  }

  /** Makes `value` a graph output named `name` (through an Identity, so any value can be exposed). */
  output(name: string, value: string, elemType: ElemType, shape?: Dim[]): void {
    this.node('Identity', [value], { outputs: [this.claim(name)] });
    this.outputs.push({ name, elemType, shape });
  }

  /** Adds a node; returns its output names (one unless `outputs` says otherwise). */
  node(op: string, inputs: string[], o: { outputs?: number | string[]; attrs?: Record<string, AttrValue>; hint?: string } = {}): string[] {
    const hint = o.hint ?? op.toLowerCase();
    const outs = Array.isArray(o.outputs) ? o.outputs : Array.from({ length: o.outputs ?? 1 }, () => this.fresh(hint));
    this.nodes.push({ op, name: this.fresh(`${hint}_node`), inputs, outputs: outs, attrs: o.attrs ?? {} });
    return outs;
  }

  /** One-output node. */
  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>, hint?: string): string {
    return this.node(op, inputs, { attrs, hint })[0]!;
  }

  /** An int64 constant (1-D unless dims say otherwise; dims [] = scalar), shared by every node asking for it. */
  i64(values: number[], dims: number[] = [values.length]): string {
    return this.constant(DT.INT64, values, dims);
  }

  /** A float32 constant. */
  f32(values: number[], dims: number[] = [values.length]): string {
    return this.constant(DT.FLOAT, values, dims);
  }

  private constant(elemType: ElemType, values: number[], dims: number[]): string {
    if (this.root !== this) return this.root.constant(elemType, values, dims);
    const key = `${elemType}:${dims.join('x')}:${values.join(',')}`;
    const hit = this.consts.get(key);
    if (hit) return hit;
    const name = this.fresh(elemType === DT.INT64 ? 'const_i64' : 'const_f32');
    this.initializers.push({ kind: 'const', name, dims, elemType, values });
    this.consts.set(key, name);
    return name;
  }

  weight(w: Omit<WeightInitializer, 'kind'>): string {
    if (this.root !== this) return this.root.weight(w);
    this.initializers.push({ kind: 'weight', ...w, name: this.claim(w.name) });
    return w.name;
  }
}
