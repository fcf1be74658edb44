/** Awaits (or calls) `p` and checks that it fails with an FfmergeError of `code` whose message has each of `mentions`. */
import { FfmergeError } from '../../lib/errors';

export async function expectCode(p: Promise<unknown> | (() => unknown), code: string, ...mentions: (string | RegExp)[]): Promise<FfmergeError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FfmergeError);
  const e = err as FfmergeError;
  expect(e.code).toBe(code);
  expect(e.message.length).toBeGreaterThan(10); // a sentence, not a bare code
  for (const m of mentions) {
    if (typeof m === 'string') expect(e.message).toContain(m);
    else expect(e.message).toMatch(m);
  }
  return e;
}

/** The code `call` fails with ('none' when it does not fail); anything but an FfmergeError fails the test. */
export async function codeOf(call: () => unknown): Promise<string> {
  try {
    await call();
  } catch (e) {
    expect(e).toBeInstanceOf(FfmergeError);
    return (e as FfmergeError).code;
  }
  return 'none';
}

/** An idx file (Fashion-MNIST's format) of unsigned bytes with the given dimensions. */
export function idxBytes(dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}
