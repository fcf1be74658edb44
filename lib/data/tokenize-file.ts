/**
 * Tokenizing a text file off the main thread, reading no more of it than a token budget needs.
 *
 * Why a worker: the JS port of 🤗 tokenizers is synchronous and takes ~0.5 s per MB of text, which would stall
 * a host's event loop (an http server embedding ffmerge) for that long. Why streamed with a budget: a
 * calibration budget of 10k tokens needs ~50 kB of text, and a 100 MB file (or /dev/zero) must not be read
 * whole for it.
 *
 * Exactness: the fixtures' protocol tokenizes a whole split in one call. Tokenizing a prefix of the text gives
 * the same ids as the whole text except near the cut (the last pre-token, or for tokenizers without
 * pre-tokenization a few merges back), so the worker reads a prefix, tokenizes it, and keeps only ids that lie
 * at least SAFETY_TOKENS before the cut; with too few it doubles the prefix and tokenizes again (at most
 * twice the work of one pass). At the end of the file every id is kept, exactly as one whole-file call.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FfmergeError, abortError, showValue, type ErrorCode } from '../errors';
import { hfTokenizerConfig } from '../tokenizer';
import { assertRegularFile } from '../files';
import { checkTextFile } from './text';
import { checkJobOptions, guardProgress, type Progress } from '../native/job';
import { checkInt, checkOneOf, checkOptions, checkPath } from '../arguments';

export interface TokenizeFileOptions {
  /** Return only the first maxTokens ids (the file is read only as far as they need). Default: all. */
  maxTokens?: number;
  /** JSON Lines field holding each document (documents are joined with "\n"). Default "text". */
  field?: string;
  /** Force the format instead of guessing it from the name (.jsonl / .jsonl.gz → jsonl, otherwise txt). */
  format?: 'txt' | 'jsonl';
  signal?: AbortSignal;
  /** {phase: 'tokenize', done: bytes read, total: file size (0 when unknown, e.g. a device)}. */
  onProgress?: (p: Progress) => void;
}

/** Ids kept back from the end of a prefix, whose tokenization may differ from the whole text's. */
export const SAFETY_TOKENS = 256;

interface WorkerInput {
  tokenizersModule: string;
  tokenizerJson: string;
  tokenizerConfig: Record<string, unknown>;
  file: string;
  format: 'txt' | 'jsonl';
  field: string;
  maxTokens: number | null;
  safety: number;
  /** The most characters of text tokenized at once (MAX_TEXT_CHARS). */
  maxChars: number;
}

type WorkerMessage =
  | { kind: 'progress'; done: number; total: number }
  | { kind: 'done'; ids: Int32Array }
  | { kind: 'error'; code: ErrorCode; message: string };

/**
 * The worker's whole program. It runs from its source text (`new Worker(code, { eval: true })`) so that it
 * works the same from the compiled package, ts-node and jest: it must not use anything from this module's
 * scope, only `require` of Node built-ins and the tokenizers module path it is given.
 */
function workerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  const fsW = require('node:fs') as typeof import('node:fs');
  const zlibW = require('node:zlib') as typeof import('node:zlib');
  const input = workerData as WorkerInput;
  const post = (m: WorkerMessage, transfer?: ArrayBuffer[]) => parentPort!.postMessage(m, transfer);
  const fail = (code: ErrorCode, message: string) => post({ kind: 'error', code, message });

  async function run(): Promise<void> {
    let tokenizer: { encode(text: string, o: { add_special_tokens: boolean }): { ids: number[] } };
    try {
      const { Tokenizer } = require(input.tokenizersModule) as { Tokenizer: new (json: unknown, config: unknown) => typeof tokenizer };
      const json = JSON.parse(fsW.readFileSync(input.tokenizerJson, 'utf8')) as { model?: { vocab?: unknown }; added_tokens?: unknown };
      // As loadTokenizer (lib/tokenizer.ts) checks: ids must be small non-negative integers, or the library's
      // tables grow with the largest id (one id of 2^31 made a short text take minutes).
      const vocab = json.model?.vocab;
      const added = Array.isArray(json.added_tokens) ? (json.added_tokens as { id?: unknown }[]) : [];
      const vocabIds = vocab && typeof vocab === 'object' && !Array.isArray(vocab) ? Object.values(vocab as Record<string, unknown>) : [];
      const ids = [...vocabIds, ...added.map((a) => a?.id)];
      const entries = (Array.isArray(vocab) ? vocab.length : vocabIds.length) + added.length;
      const limit = 4 * entries + 1024;
      if (ids.some((id) => typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= limit)) {
        fail('INVALID_CONFIG', `${input.tokenizerJson}: a token id is not an integer in 0..${limit - 1} for a vocabulary of ${entries} entries`);
        return;
      }
      tokenizer = new Tokenizer(json, input.tokenizerConfig);
    } catch (e) {
      fail('INVALID_CONFIG', `${input.tokenizerJson} could not be loaded: ${(e as Error).message}`);
      return;
    }
    let fd: number;
    try {
      fd = fsW.openSync(input.file, 'r');
    } catch (e) {
      fail('DATA_NOT_FOUND', `data file ${input.file} cannot be read: ${(e as Error).message}`);
      return;
    }
    const st = fsW.fstatSync(fd);
    const total = st.isFile() ? st.size : 0;
    const head0 = Buffer.alloc(2);
    const headBytes = fsW.readSync(fd, head0, 0, 2, null);
    const gz = headBytes === 2 && head0[0] === 0x1f && head0[1] === 0x8b;
    // The bytes already read are fed back in front of the stream (a device cannot seek back): only those read,
    // or an empty file became two NUL characters and was scored on their tokens.
    const head = head0.subarray(0, headBytes);
    const raw = fsW.createReadStream('', { fd, start: undefined, highWaterMark: 1 << 16 });
    let bytes = headBytes;
    let lastReport = 0;
    raw.on('data', (b) => {
      bytes += b.length;
      const now = Date.now();
      if (now - lastReport > 100) {
        lastReport = now;
        post({ kind: 'progress', done: bytes, total });
      }
    });
    const { PassThrough } = require('node:stream') as typeof import('node:stream');
    const joined = new PassThrough();
    joined.write(head);
    raw.pipe(joined);
    raw.on('error', (e) => joined.destroy(e));
    const source = gz ? joined.pipe(zlibW.createGunzip()) : joined;
    if (gz) joined.on('error', (e) => source.destroy(e));
    source.setEncoding('utf8');
    const chunks = source[Symbol.asyncIterator]() as AsyncIterator<string>;

    let text = '';
    let partialLine = '';
    let lineNo = 0;
    let eof = false;
    let docs = 0;
    const addLines = (s: string) => {
      // JSON Lines: the text is the documents' field joined with "\n" (blank lines skipped)
      const parts = (partialLine + s).split('\n');
      partialLine = eof ? '' : parts.pop()!;
      for (const line0 of parts) {
        lineNo++;
        const line = line0.endsWith('\r') ? line0.slice(0, -1) : line0;
        if (line.trim() === '') continue;
        let obj: unknown;
        try {
          obj = JSON.parse(line);
        } catch (e) {
          throw Object.assign(new Error(`${input.file} line ${lineNo} is not valid JSON (${(e as Error).message})`), { code: 'INVALID_DATA' });
        }
        const v = typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[input.field] : undefined;
        if (typeof v !== 'string') throw Object.assign(new Error(`${input.file} line ${lineNo} has no string field "${input.field}"`), { code: 'INVALID_DATA' });
        text = docs === 0 ? v : `${text}\n${v}`;
        docs++;
      }
    };
    const keep = input.maxTokens;
    // ~4 characters a token is typical; a poor guess only costs a doubling
    let target = keep === null ? Infinity : Math.max(1 << 14, (keep + input.safety) * 4);
    for (;;) {
      while (!eof && text.length < target) {
        let r: IteratorResult<string>;
        try {
          r = await chunks.next();
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          fail(code === 'EISDIR' || code === 'EACCES' ? 'DATA_NOT_FOUND' : 'INVALID_DATA', `${input.file} could not be read as text: ${(e as Error).message}`);
          return;
        }
        if (r.done) {
          eof = true;
          if (input.format === 'jsonl') addLines('');
        } else {
          // a byte-order mark is not text (and would break line 1's JSON): dropped, as text.ts's readers drop it
          const s = lineNo === 0 && text === '' && partialLine === '' ? r.value.replace(/^\uFEFF/, '') : r.value;
          if (input.format === 'jsonl') addLines(s);
          else text += s;
        }
        // The tokenizer holds many times the text's size: a 210 MB text read whole ran the process out of heap
        // (V8 aborts the whole process, not the thread). Past this much, a budget is required.
        if (text.length > input.maxChars) {
          fail('OUT_OF_MEMORY', `${input.file} holds more than ${input.maxChars / 2 ** 20} M characters of text, more than ffmerge tokenizes at once: give a token budget (--tokens, maxTokens)`);
          return;
        }
      }
      const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
      if (eof || (keep !== null && ids.length >= keep + input.safety)) {
        // Whitespace alone is no data (it still tokenizes to a few ids, which would get a perplexity);
        // the same words as noTextError in text.ts, which this worker cannot import.
        if (!/\S/.test(text)) {
          fail('INVALID_DATA', `${input.file} holds no text (it is empty or has only blank lines)`);
          return;
        }
        const out = Int32Array.from(keep === null ? ids : ids.slice(0, keep));
        source.destroy();
        raw.destroy();
        post({ kind: 'progress', done: bytes, total });
        post({ kind: 'done', ids: out }, [out.buffer as ArrayBuffer]);
        return;
      }
      target *= 2;
    }
  }
  run().catch((e: Error & { code?: ErrorCode }) => {
    // a file too large to tokenize whole in one thread's heap is not bad data: say what to do about it
    if (e instanceof RangeError && /array length|allocation failed/i.test(e.message)) {
      fail('OUT_OF_MEMORY', `${input.file} is too large to tokenize whole (${e.message}): give a token budget (--tokens, maxTokens)`);
    } else {
      fail(e.code ?? 'INVALID_DATA', e.message);
    }
  });
}

const WORKER_SOURCE = `(${workerMain.toString()})()`;

/**
 * A bound on threads: tokenizer workers running at once in this process, each a thread with its own V8
 * heap. Calls beyond it wait their turn (abortably), so a server running many jobs does not start a thread
 * per job. Process-wide on purpose, like the addon's thread pool.
 */
class WorkerSlots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  /** Resolves with the slot's release function once one is free; rejects ABORTED if the signal fires first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortError());
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        this.running++;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.running--;
          this.waiting.shift()?.();
        });
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(abortError());
      };
      if (this.running < this.max) return grant();
      this.waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * The most text read for one tokenizer call, in characters. A 210 MB text read whole ran the process out of heap
 * (V8 aborts the whole process, not the thread); past this the call fails at once instead. Less may still be
 * too much for the tokenizer's heap (32 M characters were): that is ERR_WORKER_OUT_OF_MEMORY, reported below.
 */
export const MAX_TEXT_CHARS = 64 * 2 ** 20;

/** At most one tokenizer thread per core (tokenizing is CPU-bound: more would only share the cores). */
export const MAX_TOKENIZER_WORKERS = Math.max(1, os.availableParallelism());
const WORKER_SLOTS = new WorkerSlots(MAX_TOKENIZER_WORKERS);

/**
 * The ids of a text file (.txt, .gz, .jsonl of {"text"}) under the model's tokenizer, no special tokens
 * added, tokenized in a worker thread; the first maxTokens of them when a budget is given. Aborting the signal
 * terminates the worker at once, whatever it is doing.
 */
export async function tokenizeFile(tokenizerDir: string, file: string, opts: TokenizeFileOptions = {}): Promise<Int32Array> {
  checkPath(tokenizerDir, 'tokenizeFile(tokenizerDir, file, options): tokenizerDir');
  checkPath(file, 'tokenizeFile(tokenizerDir, file, options): file');
  checkOptions(opts, 'tokenizeFile(tokenizerDir, file, options): options', ['maxTokens', 'field', 'format', 'signal', 'onProgress']);
  checkJobOptions(opts);
  // Infinity reads as no budget (all tokens); NaN, '5' or 2.5 is refused, not read as no budget
  if (opts.maxTokens !== Infinity) checkInt(opts.maxTokens, 'tokenizeFile: maxTokens');
  checkOneOf(opts.format, 'tokenizeFile: format', ['txt', 'jsonl'] as const);
  if (opts.field !== undefined && (typeof opts.field !== 'string' || opts.field === '')) {
    throw new FfmergeError('INVALID_ARGUMENT', `tokenizeFile: field must be a non-empty string (got ${showValue(opts.field)})`);
  }
  const { signal, onProgress } = opts;
  if (signal?.aborted) throw abortError();
  const tokenizerJson = path.join(tokenizerDir, 'tokenizer.json');
  if (!fs.existsSync(tokenizerJson)) throw new FfmergeError('INVALID_CONFIG', `${tokenizerDir} has no tokenizer.json; the tokenizer needs it`);
  // Both must be regular files: a FIFO would block the worker's reads forever (checked here, asynchronously).
  await assertRegularFile(tokenizerJson, 'INVALID_CONFIG');
  // The data file also must look like text (a .gz that is gzip, no binary first block): text.ts's check, so
  // the worker and the streaming readers refuse the same files.
  await checkTextFile(file);
  // an abort during the checks above fired no listener yet: it is honoured here, before a worker starts
  if (signal?.aborted) throw abortError();
  const maxTokens = opts.maxTokens !== undefined && opts.maxTokens !== Infinity ? opts.maxTokens : null;
  let tokenizerConfig: Record<string, unknown>;
  try {
    tokenizerConfig = hfTokenizerConfig(tokenizerDir);
  } catch (e) {
    return Promise.reject(e);
  }
  const input: WorkerInput = {
    tokenizersModule: require.resolve('@huggingface/tokenizers'),
    tokenizerJson,
    tokenizerConfig,
    file: path.resolve(file),
    format: opts.format ?? (/\.jsonl(\.gz)?$/i.test(file) ? 'jsonl' : 'txt'),
    field: opts.field ?? 'text',
    maxTokens,
    safety: SAFETY_TOKENS,
    maxChars: MAX_TEXT_CHARS,
  };
  const release = await WORKER_SLOTS.acquire(signal);
  let worker: Worker;
  try {
    if (signal?.aborted) throw abortError(); // aborted while the slot was being handed over
    worker = new Worker(WORKER_SOURCE, { eval: true, workerData: input });
  } catch (e) {
    release();
    throw e;
  }
  return new Promise<Int32Array>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, ids?: Int32Array) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      // the slot is free once the thread is gone, not when the promise settles
      void worker.terminate().finally(release);
      if (err) reject(err);
      else resolve(ids!);
    };
    const onAbort = () => finish(abortError());
    signal?.addEventListener('abort', onAbort, { once: true });
    const report = onProgress && guardProgress(onProgress, (e) => finish(e instanceof Error ? e : new Error(String(e))));
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'progress') report?.({ phase: 'tokenize', done: m.done, total: m.total });
      else if (m.kind === 'done') finish(undefined, m.ids);
      else finish(new FfmergeError(m.code, m.message));
    });
    worker.on('error', (e: Error & { code?: string }) =>
      finish(
        e.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new FfmergeError('OUT_OF_MEMORY', `the tokenizer thread ran out of memory on ${file} (its text is tokenized in one call): give a smaller token budget or a smaller file`, { cause: e })
          : new FfmergeError('INVALID_DATA', `tokenizing ${file} failed: ${e.message}`, { cause: e }),
      ),
    );
    worker.on('exit', (code) => finish(new FfmergeError('INVALID_DATA', `tokenizing ${file} stopped (worker exit code ${code})`)));
  });
}
