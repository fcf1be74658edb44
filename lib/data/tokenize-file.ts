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
 * at least 256 ids (`safety` in workerMain) before the cut; with too few it doubles the prefix and tokenizes again (at most
 * twice the work of one pass). At the end of the file every id is kept, exactly as one whole-file call.
 *
 * Large texts, in pieces: one call holds many times its text in the tokenizer's heap (~340 bytes a character
 * for llama-stories260k's), and that BPE slows down on long calls. So text is tokenized in one call only up to
 * oneCallChars (every fixture split, wikitext-2 test's 1.3 M characters the longest, stays one call, its ids
 * unchanged). A longer text is cut into pieces of about pieceChars, each tokenized alone, ids appended to a
 * growing Int32Array, so memory is bounded by a piece and the ids.
 *
 * A cut lies at a line break, just before or just after a "\n", and is taken only once checked on the text
 * around it: the ids of verifyChars either side in one call must be those of the two sides in two calls, up
 * to ids the tokenizer puts at the start of every call, which are then dropped from the next piece (the "▁" a
 * sentencepiece-style Prepend normalizer adds). Measured against one call on 5.4 MB of real text cut every
 * 16 Ki characters: no id differs for gpt2-sotu or llama-stories260k.
 * What remains: the check is local, so a tokenizer whose merges reach across a line break further than
 * verifyChars could still differ near a cut; and when no line break up to maxCallChars passes the check
 * (MAX_CUT_TRIES of them are tried each way; none of the fixtures' tokenizers gets there), the piece is cut
 * after its last "\n" unchecked, so ids next to that cut may differ from one call's. A stretch of more than
 * maxCallChars without a line break (one 100 MB line) is not cut at all: INVALID_DATA, saying what to do.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FfmergeError, abortError, showValue, type ErrorCode } from '../errors';
import { hfTokenizerConfig } from '../tokenizer';
import { tokenizerJsonProblem } from '../tokenizer-check';
import { MAX_JSON_FILE_BYTES, assertRegularFile, whyMissing } from '../files';
import { checkTextFile, formatOf, jsonLineDocument, lineSplitter, newlines, openDataFile } from './text';
import { checkJobOptions, guardProgress, onAbort, type Progress } from '../native/job';
import { checkInt, checkOneOf, checkPath } from '../arguments';

export interface TokenizeFileOptions {
  /** Return only the first maxTokens ids (the file is read only as far as they need). Default: all. */
  maxTokens?: number | undefined;
  /** JSON Lines field holding each document (documents are joined with "\n"). Default "text". */
  field?: string | undefined;
  /** Force the format instead of guessing it from the name (.jsonl / .jsonl.gz → jsonl, otherwise txt). */
  format?: 'txt' | 'jsonl' | undefined;
  signal?: AbortSignal | undefined;
  /**
   * {phase: 'tokenize', done: bytes read, total: file size (0 when unknown, e.g. a device)}; where the token
   * budget ends reading early, a last report of done = total says the phase is over.
   */
  onProgress?: ((p: Progress) => void) | undefined;
}

interface WorkerInput {
  tokenizersModule: string;
  tokenizerJson: string;
  tokenizerConfig: Record<string, unknown>;
  file: string;
  /**
   * The data file, opened by the calling thread, which also closes it once the worker has exited: a worker
   * terminated mid-read (an abort, or right after it posted its result) cannot close a descriptor itself.
   */
  fd: number;
  format: 'txt' | 'jsonl';
  field: string;
  maxTokens: number | null;
  limits: TokenizeLimits;
}

/**
 * How large texts are cut (see the header). Fixed for callers (TOKENIZE_LIMITS); tests pass small ones to
 * tokenizeFileWith so that a small file takes many cuts.
 */
export interface TokenizeLimits {
  /** A text (or the prefix a budget needs) of at most this many characters is tokenized in one call. */
  oneCallChars: number;
  /** Characters in a piece when the text is longer: the cut is the last line break that passes, before this. */
  pieceChars: number;
  /** The longest piece when no line break before pieceChars passes: a longer stretch is OUT_OF_MEMORY. */
  maxCallChars: number;
  /** Characters either side of a cut tokenized to check it. */
  verifyChars: number;
  /** The most ids a file gives (4 bytes each, held twice while they are handed over): more is OUT_OF_MEMORY. */
  maxIds: number;
}

type WorkerMessage =
  | { kind: 'progress'; done: number; total: number; detail?: string }
  | { kind: 'done'; ids: Int32Array }
  | { kind: 'error'; code: ErrorCode; message: string };

/**
 * The worker's whole program. It runs from its source text (`new Worker(code, { eval: true })`) so that it
 * works the same from the compiled package, ts-node and jest: it must not use anything from this module's
 * scope, only `require` of Node built-ins, the tokenizers module path it is given, and the self-contained
 * functions passed in as their source text (tokenizerJsonProblem, and text.ts's newlines, lineSplitter and
 * jsonLineDocument).
 */
function workerMain(problemOf: typeof tokenizerJsonProblem, newlinesOf: typeof newlines, lineSplitterOf: typeof lineSplitter, documentOf: typeof jsonLineDocument): void {
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
      const json = JSON.parse(fsW.readFileSync(input.tokenizerJson, 'utf8')) as unknown;
      // what loadTokenizer refuses (lib/tokenizer-check.ts), handed in as source text with this program
      const problem = problemOf(json, input.tokenizerJson);
      if (problem !== undefined) {
        fail('INVALID_CONFIG', problem);
        return;
      }
      tokenizer = new Tokenizer(json, input.tokenizerConfig);
    } catch (e) {
      fail('INVALID_CONFIG', `${input.tokenizerJson} could not be loaded: ${(e as Error).message}`);
      return;
    }
    const fd = input.fd; // not closed here (see WorkerInput.fd)
    const st = fsW.fstatSync(fd);
    const total = st.isFile() ? st.size : 0;
    const head0 = Buffer.alloc(2);
    const headBytes = fsW.readSync(fd, head0, 0, 2, null);
    const gz = headBytes === 2 && head0[0] === 0x1f && head0[1] === 0x8b;
    // The bytes already read are fed back in front of the stream (a device cannot seek back): only those read,
    // else an empty or 1-byte file gains NUL characters that are scored as tokens
    const head = head0.subarray(0, headBytes);
    // destroy() closes a stream's fd whatever autoClose says: a close that does nothing leaves it to its owner
    const noClose = { open: fsW.open, read: fsW.read, close: (_fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => cb(null) };
    const raw = fsW.createReadStream('', { fd, fs: noClose, autoClose: false, start: undefined, highWaterMark: 1 << 16 });
    let bytes = headBytes;
    raw.on('data', (b) => {
      bytes += b.length;
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

    // an error with one of lib/errors.ts's codes, reported by run().catch below
    const typed = (code: ErrorCode, message: string) => Object.assign(new Error(message), { code });
    const { oneCallChars, pieceChars, maxCallChars, verifyChars, maxIds } = input.limits;
    // line breaks checked for a cut before one is taken unchecked (see the header)
    const MAX_CUT_TRIES = 32;
    const encode = (s: string): number[] => tokenizer.encode(s, { add_special_tokens: false }).ids;

    let text = '';
    // Progress counts the bytes tokenized, not those read (the reader runs megabytes ahead of the tokenizer).
    // Estimated as the share of the text read so far that has been tokenized, of the bytes read so far.
    let produced = 0;
    let reported = 0;
    let lastReport = 0;
    const progress = (detail?: string) => {
      const now = Date.now();
      if (detail === undefined && now - lastReport < 100) return;
      lastReport = now;
      reported = Math.max(reported, produced > 0 ? Math.round((bytes * (produced - text.length)) / produced) : 0);
      post({ kind: 'progress', done: reported, total, ...(detail ? { detail } : {}) });
    };
    let lineNo = 0;
    let eof = false;
    let docs = 0;
    let firstChunk = true;
    // line ends as Python's text mode reads them, and lines split, by text.ts's own newlines() and lineSplitter()
    const lf = newlinesOf();
    const splitLines = lineSplitterOf();
    const addLines = (s: string) => {
      // JSON Lines: the text is the documents' field joined with "\n" (blank lines skipped)
      for (const line of splitLines(s, eof)) {
        lineNo++;
        if (line.trim() === '') continue;
        // as text.ts's readDocuments reads a row
        const v = documentOf(line, input.field);
        if (typeof v !== 'string') throw typed('INVALID_DATA', `${input.file} line ${lineNo} ${v.problem}`);
        text = docs === 0 ? v : `${text}\n${v}`;
        docs++;
      }
    };
    const add = (s: string) => {
      const before = text.length;
      const t = lf(s, eof);
      if (input.format === 'jsonl') addLines(t);
      else text += t;
      produced += text.length - before;
    };
    /** Reads on until `text` (what is not tokenized yet) holds `want` characters or the file ends. */
    const fill = async (want: number): Promise<void> => {
      while (!eof && text.length < want) {
        const r = await chunks.next().catch((e: NodeJS.ErrnoException) => {
          throw typed(e.code === 'EISDIR' || e.code === 'EACCES' ? 'DATA_NOT_FOUND' : 'INVALID_DATA', `${input.file} could not be read as text: ${e.message}`);
        });
        if (r.done) {
          eof = true;
          add('');
        } else {
          // a byte-order mark is not text (and would break line 1's JSON): dropped, as text.ts's readers drop it
          add(firstChunk ? r.value.replace(/^\uFEFF/, '') : r.value);
          firstChunk = false;
          progress();
        }
      }
    };
    // Whitespace alone is no data (it still tokenizes to a few ids, which would get a perplexity);
    // the same words as noTextError in text.ts, which this worker cannot import.
    const noText = () => typed('INVALID_DATA', `${input.file} holds no text (it is empty or has only blank lines)`);
    const finish = (out: Int32Array) => {
      source.destroy();
      raw.destroy();
      post({ kind: 'progress', done: bytes, total });
      post({ kind: 'done', ids: out }, [out.buffer as ArrayBuffer]);
    };

    const keep = input.maxTokens;
    // ids kept back from the end of a prefix, whose tokenization may differ from the whole text's
    const safety = 256;
    // One call while the text (or the prefix the budget needs) fits in it: the fixtures' protocol, exactly.
    // ~4 characters a token is typical; a poor guess only costs a doubling
    let target = keep === null ? Infinity : Math.max(1 << 14, (keep + safety) * 4);
    for (;;) {
      await fill(Math.min(target, oneCallChars + 1));
      if (text.length > oneCallChars) break; // more than one call takes: in pieces, below
      // one call, with no report until it returns: the bar says what it waits for
      progress(`tokenizing ${text.length.toLocaleString('en-US')} characters in one call`);
      const ids = encode(text);
      if (eof || (keep !== null && ids.length >= keep + safety)) {
        if (!/\S/.test(text)) throw noText();
        finish(Int32Array.from(keep === null ? ids : ids.slice(0, keep)));
        return;
      }
      target *= 2;
    }

    // In pieces. Ids go to a growing Int32Array: a JS array of 16 M numbers alone is 128 MB or more.
    let out = new Int32Array(Math.min(1 << 16, maxIds));
    let n = 0;
    const append = (ids: number[], from: number) => {
      // none past the budget: they would only grow the array
      const to = keep === null ? ids.length : Math.min(ids.length, from + keep - n);
      const need = n + to - from;
      if (need > maxIds) {
        throw typed('OUT_OF_MEMORY', `${input.file} gives more than ${maxIds} tokens, more than ffmerge holds at once: give a token budget (--tokens, maxTokens)`);
      }
      if (need > out.length) {
        const grown = new Int32Array(Math.min(maxIds, Math.max(need, Math.ceil(out.length * 1.5))));
        grown.set(out.subarray(0, n));
        out = grown;
      }
      for (let i = from; i < to; i++) out[n++] = ids[i]!;
    };
    let anyText = false;
    /** Ids every call starts with that one call over the whole text has not there (sentencepiece's "▁"), found by the last cut's check. */
    let lead: number[] = [];
    const piece = (s: string) => {
      anyText ||= /\S/.test(s);
      const ids = encode(s);
      let from = 0;
      // the cut's check saw these ids start the text after it; a piece starting otherwise is kept whole
      if (lead.length <= ids.length && lead.every((id, i) => ids[i] === id)) from = lead.length;
      append(ids, from);
    };
    const sameIds = (a: number[], aFrom: number, b: number[], bFrom: number, len: number) => {
      for (let i = 0; i < len; i++) if (a[aFrom + i] !== b[bFrom + i]) return false;
      return true;
    };
    /**
     * The ids the text after a cut at c starts with that one call has not there, when the ids of
     * text[c - verifyChars, c + verifyChars) in one call are those of its two sides in two calls but for them;
     * null when the cut changes ids.
     */
    const check = (c: number): number[] | null => {
      let a = Math.max(0, c - verifyChars);
      let b = Math.min(text.length, c + verifyChars);
      // not between the halves of a surrogate pair (both sides would read it as two broken characters)
      if (a > 0 && (text.charCodeAt(a) & 0xfc00) === 0xdc00) a--;
      if (b < text.length && (text.charCodeAt(b) & 0xfc00) === 0xdc00) b++;
      const whole = encode(text.slice(a, b));
      const left = encode(text.slice(a, c));
      const right = encode(text.slice(c, b));
      const rest = whole.length - left.length;
      const extra = right.length - rest;
      if (rest < 0 || extra < 0 || !sameIds(whole, 0, left, 0, left.length) || !sameIds(whole, left.length, right, extra, rest)) return null;
      return right.slice(0, extra);
    };
    let afterFirst = true; // which side of a "\n" passed last: tried first at the next cut
    /**
     * A cut in (lo, hi] that passes its check, trying MAX_CUT_TRIES line breaks there: the last ones, or with
     * `forward` the first ones (a piece runs past pieceChars no further than it must); null if none passes.
     */
    const findCut = (lo: number, hi: number, forward = false): { at: number; lead: number[] } | null => {
      let tries = 0;
      const next = (j: number) => (forward ? text.indexOf('\n', j + 1) : j > 0 ? text.lastIndexOf('\n', j - 1) : -1);
      for (let j = forward ? text.indexOf('\n', lo) : text.lastIndexOf('\n', hi); j >= lo && j <= hi && tries++ < MAX_CUT_TRIES; j = next(j)) {
        for (const at of afterFirst ? [j + 1, j] : [j, j + 1]) {
          if (at <= lo || at > hi || at >= text.length) continue;
          const l = check(at);
          if (l !== null) {
            afterFirst = at === j + 1;
            return { at, lead: l };
          }
        }
      }
      return null;
    };
    for (;;) {
      await fill(pieceChars + verifyChars);
      if (eof && text.length <= pieceChars) break;
      let cut = findCut(0, Math.min(pieceChars, text.length - 1));
      if (cut === null) {
        // none in the piece (a long line): the piece may run on up to maxCallChars
        await fill(maxCallChars + verifyChars);
        if (eof && text.length <= maxCallChars) break;
        const hi = Math.min(maxCallChars, text.length - 1);
        cut = findCut(pieceChars, hi, true);
        if (cut === null) {
          // after the last line break, unchecked: its ids may differ from one call's (see the header)
          const j = text.lastIndexOf('\n', hi - 1);
          if (j < 0) {
            // bad input, not a lack of memory: the file is refused as data (exit 3), saying what to do
            throw typed(
              'INVALID_DATA',
              `${input.file} holds more than ${maxCallChars} characters without a line break, more than ffmerge tokenizes at once (it cuts long texts at line breaks): break the text into lines, or give a token budget (--tokens, maxTokens)`,
            );
          }
          cut = { at: j + 1, lead: [] };
        }
      }
      piece(text.slice(0, cut.at));
      lead = cut.lead;
      text = text.slice(cut.at);
      progress();
      if (keep !== null && n >= keep) break;
    }
    if (text.length > 0 && (keep === null || n < keep)) piece(text);
    if (!anyText) throw noText();
    // the ids as they are when the array is nearly full, else a copy of just them
    finish(n >= out.length * 0.875 ? out.subarray(0, n) : out.slice(0, n));
  }
  run().catch((e: Error & { code?: ErrorCode }) => {
    // a file too large for one thread's heap is not bad data: say what to do about it
    if (e instanceof RangeError && /array length|allocation failed/i.test(e.message)) {
      fail('OUT_OF_MEMORY', `${input.file} is too large to tokenize (${e.message}): give a token budget (--tokens, maxTokens)`);
    } else {
      fail(e.code ?? 'INVALID_DATA', e.message);
    }
  });
}

const WORKER_SOURCE = `(${workerMain.toString()})(${tokenizerJsonProblem.toString()}, ${newlines.toString()}, ${lineSplitter.toString()}, ${jsonLineDocument.toString()})`;

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
      if (signal?.aborted) return reject(abortError(signal));
      let stopListening = () => {};
      const grant = () => {
        stopListening();
        this.running++;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.running--;
          this.waiting.shift()?.();
        });
      };
      if (this.running < this.max) return grant();
      this.waiting.push(grant);
      stopListening = onAbort(signal, () => {
        const i = this.waiting.indexOf(grant);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(abortError(signal));
      });
    });
  }
}

/**
 * How texts are cut (the header says why). One call up to 1.5 Mi characters (llama-stories260k's tokenizer
 * holds ~340 bytes a character). Pieces of 128 Ki characters (its BPE is faster on short calls); a piece runs
 * past that only to reach a line break, never past 4 Mi characters. 2^28 ids (1 GiB) is more than any
 * evaluation here reads.
 */
export const TOKENIZE_LIMITS: Readonly<TokenizeLimits> = Object.freeze({
  oneCallChars: 1.5 * 2 ** 20,
  pieceChars: 128 * 2 ** 10,
  maxCallChars: 4 * 2 ** 20,
  verifyChars: 512,
  maxIds: 2 ** 28,
});

/** At most one tokenizer thread per core (tokenizing is CPU-bound: more would only share the cores). */
export const MAX_TOKENIZER_WORKERS = Math.max(1, os.availableParallelism());
const WORKER_SLOTS = new WorkerSlots(MAX_TOKENIZER_WORKERS);

/**
 * The ids of a text file (.txt, .gz, .jsonl of {"text"}) under the model's tokenizer, no special tokens
 * added, tokenized in a worker thread; the first maxTokens of them when a budget is given. Aborting the signal
 * terminates the worker at once, whatever it is doing.
 */
export function tokenizeFile(tokenizerDir: string, file: string, opts: TokenizeFileOptions = {}): Promise<Int32Array> {
  return tokenizeFileWith(tokenizerDir, file, opts, TOKENIZE_LIMITS);
}

/** tokenizeFile with the cutting limits given (tests cut small files into many pieces with it); not exported from the package. */
export async function tokenizeFileWith(tokenizerDir: string, file: string, opts: TokenizeFileOptions, limits: Readonly<TokenizeLimits>): Promise<Int32Array> {
  checkPath(tokenizerDir, 'tokenizeFile(tokenizerDir, file, options): tokenizerDir');
  checkPath(file, 'tokenizeFile(tokenizerDir, file, options): file');
  checkJobOptions(opts, 'tokenizeFile(tokenizerDir, file, options): options', ['maxTokens', 'field', 'format']);
  // Infinity reads as no budget (all tokens); NaN, '5' or 2.5 is refused, not read as no budget
  if (opts.maxTokens !== Infinity) checkInt(opts.maxTokens, 'tokenizeFile: maxTokens');
  checkOneOf(opts.format, 'tokenizeFile: format', ['txt', 'jsonl'] as const);
  if (opts.field !== undefined && (typeof opts.field !== 'string' || opts.field === '')) {
    throw new FfmergeError('INVALID_ARGUMENT', `tokenizeFile: field must be a non-empty string (got ${showValue(opts.field)})`);
  }
  const { signal, onProgress } = opts;
  if (signal?.aborted) throw abortError(signal);
  const tokenizerJson = path.join(tokenizerDir, 'tokenizer.json');
  if (!fs.existsSync(tokenizerJson)) {
    // a link that loops or points nowhere is there, broken: "has no" sent users looking for a file that is there
    const why = whyMissing(tokenizerJson);
    throw new FfmergeError('INVALID_CONFIG', why === 'does not exist' ? `${tokenizerDir} has no tokenizer.json; the tokenizer needs it` : `${tokenizerJson} ${why}; the tokenizer needs it`);
  }
  // Both must be regular files: a FIFO would block the worker's reads forever (checked here, asynchronously).
  // and no larger than loadTokenizer reads (the worker reads it whole)
  await assertRegularFile(tokenizerJson, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES);
  // The data file also must look like text (a .gz that is gzip, no binary first block): text.ts's check, so
  // the worker and the streaming readers refuse the same files. Read as prose by its name: not JSON Lines.
  const format = formatOf(file, opts);
  await checkTextFile(file, { prose: opts.format === undefined && format === 'txt' });
  // an abort during the checks above fired no listener yet: it is honoured here, before a worker starts
  if (signal?.aborted) throw abortError(signal);
  const tokenizerConfig = hfTokenizerConfig(tokenizerDir);
  const input: Omit<WorkerInput, 'fd'> = {
    tokenizersModule: require.resolve('@huggingface/tokenizers'),
    tokenizerJson,
    tokenizerConfig,
    file: path.resolve(file),
    format,
    field: opts.field ?? 'text',
    maxTokens: opts.maxTokens !== undefined && opts.maxTokens !== Infinity ? opts.maxTokens : null,
    limits: { ...limits },
  };
  const releaseSlot = await WORKER_SLOTS.acquire(signal);
  let fh: fs.promises.FileHandle | undefined;
  // the slot is free, and the file closed, once the thread is gone
  const release = () => {
    releaseSlot();
    void fh?.close().catch(() => {});
  };
  let worker: Worker;
  try {
    if (signal?.aborted) throw abortError(signal); // aborted while the slot was being handed over
    fh = await openDataFile(input.file);
    if (signal?.aborted) throw abortError(signal);
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ...input, fd: fh.fd } });
    } catch (e) {
      // copying the settings to the thread overflows the stack on a value nested 100k deep (tester GD): the
      // folder's JSON, not ffmerge, is at fault
      if ((e as Error | undefined)?.name !== 'RangeError') throw e; // by name: the error may come from another realm
      throw new FfmergeError('INVALID_CONFIG', `${tokenizerDir}: its tokenizer settings (tokenizer_config.json, special_tokens_map.json) hold a value nested too deep to read`, { cause: e });
    }
  } catch (e) {
    release();
    throw e;
  }
  return new Promise<Int32Array>((resolve, reject) => {
    let settled = false;
    let stopListening = () => {};
    const settle = (then: () => void) => {
      if (settled) return;
      settled = true;
      stopListening();
      // the slot is free once the thread is gone, not when the promise settles
      void worker.terminate().finally(release);
      then();
    };
    // any value: a progress callback's own thrown value fails the call as it is, as in every other call
    const fail = (e: unknown) => settle(() => reject(e));
    stopListening = onAbort(signal, () => fail(abortError(signal)));
    const report = onProgress && guardProgress(onProgress, fail);
    let last = { done: 0, total: 0 };
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'progress') {
        last = m;
        report?.({ phase: 'tokenize', done: m.done, total: m.total, ...(m.detail ? { detail: m.detail } : {}) });
      } else if (m.kind === 'done') {
        // a token budget that ends reading early ends the count too
        if (last.done < last.total) report?.({ phase: 'tokenize', done: last.total, total: last.total, detail: 'the token budget is reached' });
        settle(() => resolve(m.ids));
      }
      else fail(new FfmergeError(m.code, m.message));
    });
    worker.on('error', (e: Error & { code?: string }) =>
      fail(
        e.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new FfmergeError('OUT_OF_MEMORY', `the tokenizer thread ran out of memory on ${file} (it tokenizes up to ${limits.oneCallChars} characters in one call): give a smaller token budget or a smaller file`, { cause: e })
          : new FfmergeError('INVALID_DATA', `tokenizing ${file} failed: ${e.message}`, { cause: e }),
      ),
    );
    worker.on('exit', (code) => fail(new FfmergeError('INVALID_DATA', `tokenizing ${file} stopped (worker exit code ${code})`)));
  });
}
