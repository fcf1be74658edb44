/**
 * Builds safetensors bytes by hand (independently of lib/safetensors/writer) so tests can craft valid and
 * deliberately malformed files.
 */
export interface RawEntry {
  dtype: string;
  shape: unknown;
  data_offsets: unknown;
}

export function buildSafetensors(
  header: Record<string, RawEntry | Record<string, string> | unknown>,
  data: Uint8Array,
  opts: { headerLength?: bigint; headerText?: string } = {},
): Uint8Array {
  const json = Buffer.from(opts.headerText ?? JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, opts.headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Mulberry32: a small deterministic PRNG. */
export { mulberry32 as prng } from '../reference/random';

export function randomBytes(n: number, rnd: () => number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}
