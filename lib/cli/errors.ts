/**
 * How the CLI reports failures: one line on stderr (or a JSON object on stdout with --json) and an exit code
 * by kind, so scripts can tell a bad invocation from bad data from a crash.
 *   2  bad arguments (USAGE below)
 *   3  missing or unreadable inputs (INPUT below; SOURCE_CHANGED: the model folder was replaced while a job read
 *      it, SHAPE_MISMATCH: a tensor the config does not describe, SEQUENCE_TOO_LONG: a data row too long for the model)
 *   4  numerical failure (NUMERIC below: non-finite values or metrics, singular refit)
 *   130 aborted (Ctrl-C; 143 for SIGTERM, 129 for SIGHUP: 128 + the signal's number)
 *   1  anything else (PLUGIN_FAILED; INTERNAL_ERROR, the code printed for a failure that carries none)
 */
import { FfmergeError, type ErrorCode } from '../errors';
import { envFlag } from '../native/env';

const USAGE: ErrorCode[] = ['INVALID_ARGUMENT', 'OPTION_NOT_APPLICABLE', 'K_TOO_LARGE', 'INVALID_WINDOW', 'OUTPUT_EXISTS', 'OUTPUT_NOT_WRITABLE'];
const INPUT: ErrorCode[] = ['DATA_NOT_FOUND', 'INVALID_DATA', 'INVALID_CONFIG', 'UNSUPPORTED_ARCHITECTURE', 'TENSOR_NOT_FOUND', 'SHAPE_MISMATCH', 'SEQUENCE_TOO_LONG', 'IO_ERROR', 'SOURCE_CHANGED'];
const NUMERIC: ErrorCode[] = ['NON_FINITE_INPUT', 'NON_FINITE_ACTIVATIONS', 'NON_FINITE_METRIC', 'SINGULAR_MATRIX'];

/** The exit code of an abort by Ctrl-C (main gives 128 + the signal's number for other signals). */
export const EXIT_ABORTED = 130;

export function exitCodeFor(e: unknown): number {
  if (!(e instanceof FfmergeError)) return 1;
  if (e.code === 'ABORTED') return EXIT_ABORTED;
  if (USAGE.includes(e.code)) return 2;
  if (INPUT.includes(e.code) || e.code.startsWith('SAFETENSORS_')) return 3;
  if (NUMERIC.includes(e.code)) return 4;
  return 1;
}

/**
 * The message as one line a terminal shows as written: control characters (C0, DEL, C1) become \uXXXX. A
 * message may quote a file's own bytes (a shard name from an index, a token), and ESC sequences in it would
 * clear or recolour the user's terminal, a NUL or newline cut the line. --json needs none of this.
 */
function printable(message: string): string {
  return message.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function reportError(e: unknown, json: boolean): number {
  const code = e instanceof FfmergeError ? e.code : 'INTERNAL_ERROR';
  // a value thrown that is no Error (a plug-in's `throw null`) says so, not just "null"
  const message = e instanceof Error ? e.message : `a value that is not an Error was thrown: ${String(e)}`;
  if (json) {
    process.stdout.write(JSON.stringify({ ok: false, error: { code, message } }) + '\n');
  } else {
    process.stderr.write(`ffmerge: ${printable(message)} [${code}]\n`);
    if (!(e instanceof FfmergeError) && envFlag('FFMERGE_DEBUG') && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  }
  return exitCodeFor(e);
}
