/**
 * Whether `v` is a Float32Array, from any realm: arrays the native addon makes belong to Node's main realm,
 * which is not the realm of code run under jest (or in a vm context), where `instanceof` says false.
 */
export function isFloat32Array(v: unknown): v is Float32Array {
  return Object.prototype.toString.call(v) === '[object Float32Array]';
}

/** Whether `v` is an Int32Array, from any realm (as isFloat32Array). */
export function isInt32Array(v: unknown): v is Int32Array {
  return Object.prototype.toString.call(v) === '[object Int32Array]';
}

/** Whether `v` is a Uint8Array (a Buffer is one), from any realm (as isFloat32Array). */
export function isUint8Array(v: unknown): v is Uint8Array {
  return Object.prototype.toString.call(v) === '[object Uint8Array]';
}

/** The arrays one after another in one new array (`make(n)` gives an empty one of n elements). */
export function joinArrays<A extends Int32Array | Float32Array>(parts: readonly A[], make: (n: number) => A): A {
  const out = make(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
