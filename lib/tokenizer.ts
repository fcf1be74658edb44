/**
 * Tokenizers for model folders in Hugging Face layout, through the maintained pure-JS port of 🤗 tokenizers
 * (`@huggingface/tokenizers`, reading the folder's `tokenizer.json`).
 *
 * Module format: the package ships ESM and, for Node's `require` condition, a CommonJS build
 * (`dist/tokenizers.cjs`), so a plain import works both in the compiled CommonJS library and under jest.
 *
 * Behaviour that follows transformers rather than the JS port's defaults:
 *  - `clean_up_tokenization_spaces` defaults to false when tokenizer_config.json does not set it
 *    (transformers ≥ 4.45; the port defaults to true, which turns "a ." into "a." on decode).
 *  - when tokenizer_config.json sets `add_bos_token` / `add_eos_token` (LLaMA-style tokenizers), those flags
 *    decide whether BOS/EOS surround the text, as transformers' LlamaTokenizerFast does, whatever
 *    tokenizer.json's post-processor says.
 * Special token ids come from tokenizer_config.json, then special_tokens_map.json (token strings), then
 * config.json (`*_token_id`).
 */
import { checkFolder, MAX_JSON_FILE_BYTES, readRegularFileSync } from './files';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { FfmergeError, showValue } from './errors';
import { checkPath, isObject } from './arguments';
import { tokenizerJsonProblem } from './tokenizer-check';

export interface EncodeOptions {
  /** Add the model's special tokens (BOS/EOS per its post-processor or add_bos/eos flags). Default true. */
  addSpecialTokens?: boolean | undefined;
  /**
   * Keep at most this many ids, special tokens included: the text's tokens are cut from the right and the
   * special tokens kept (transformers' `truncation=True, max_length=...` for one sequence).
   */
  maxLength?: number | undefined;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, pad, ...) from the text. Default false. */
  skipSpecialTokens?: boolean | undefined;
}

export interface SpecialTokenIds {
  bos?: number;
  eos?: number;
  pad?: number;
  unk?: number;
}

export interface Tokenizer {
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  /** Vocabulary size including added tokens. */
  readonly vocabSize: number;
  readonly special: Readonly<SpecialTokenIds>;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}

type Json = Record<string, unknown>;

/** A JSON object file; one that is not there is {} unless `required`. */
function readJson(file: string, required = false): Json {
  let text: string;
  try {
    text = readRegularFileSync(file, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES);
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      if (!required) return {};
      throw new FfmergeError('INVALID_CONFIG', `${path.dirname(file)} has no ${path.basename(file)}; the tokenizer needs it`);
    }
    throw new FfmergeError('IO_ERROR', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!isObject(v)) throw new Error('not a JSON object');
    return v;
  } catch (e) {
    throw new FfmergeError('INVALID_CONFIG', `${file} is not a valid JSON object (${(e as Error).message})`);
  }
}

/** A token given as a string or as an AddedToken object {content: ...}. */
function tokenString(v: unknown): string | undefined {
  const s = isObject(v) ? v.content : v;
  return typeof s === 'string' ? s : undefined;
}

class ModelTokenizer implements Tokenizer {
  readonly vocabSize: number;

  constructor(
    private readonly hf: HFTokenizer,
    readonly special: Readonly<SpecialTokenIds>,
    /** Explicit add_bos/add_eos flags; undefined leaves special tokens to tokenizer.json's post-processor. */
    private readonly addFlags: { bos: boolean; eos: boolean } | undefined,
    /** Set when a text may be cut at a space before encoding without changing its first ids (spaceCutSafe). */
    private readonly cutAtSpaces: boolean,
    /** The folder it was loaded from: a worker thread loads the same tokenizer from it (tokenizerDirOf). */
    readonly dir: string,
    /** Its files as they were when read (tokenizerStamp): the folder is the same tokenizer only while they match. */
    readonly stamp: string,
  ) {
    this.vocabSize = hf.get_vocab(true).size;
  }

  get bosId() {
    return this.special.bos;
  }
  get eosId() {
    return this.special.eos;
  }
  get padId() {
    return this.special.pad;
  }
  get unkId() {
    return this.special.unk;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new FfmergeError('INVALID_ARGUMENT', 'encode() takes a string');
    const addSpecial = opts.addSpecialTokens ?? true;
    // a text cut to maxLength ids is first cut to the words those ids can come from (cutText: the same ids)
    const content = this.encodeContent(opts.maxLength !== undefined && Number.isSafeInteger(opts.maxLength) ? this.cutText(text, opts.maxLength) : text);
    const { prefix, suffix } = addSpecial ? this.specialFrame() : { prefix: [], suffix: [] };
    if (opts.maxLength !== undefined) {
      const room = opts.maxLength - prefix.length - suffix.length;
      if (!Number.isSafeInteger(opts.maxLength) || room < 0) {
        throw new FfmergeError(
          'INVALID_ARGUMENT',
          `maxLength must be an integer ≥ ${prefix.length + suffix.length} (the special tokens), got ${opts.maxLength}`,
        );
      }
      if (content.length > room) content.length = room;
    }
    return prefix.length || suffix.length ? [...prefix, ...content, ...suffix] : content;
  }

  /**
   * The text's own ids. The tokenizer library overflows the stack on a very long text (it spreads a text's
   * tokens into one call's arguments: a line of ~500,000 characters): that is the data's problem, told as such.
   */
  private encodeContent(text: string): number[] {
    try {
      return this.hf.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new FfmergeError(
        'INVALID_DATA',
        `a text of ${text.length.toLocaleString('en-US')} characters is too long for the tokenizer library to encode (${e.message}): split or shorten it`,
        { cause: e },
      );
    }
  }

  /**
   * A prefix of `text` whose first `maxLength` ids (special tokens included) are the text's own, and which
   * has more than maxLength of them exactly when the text has: the text up to its (maxLength + 2)-th space,
   * when the tokenizer allows it (spaceCutSafe), else the text itself. Why the ids are the same: every space
   * becomes the Metaspace mark "▁", no vocabulary piece holds "▁" after its first character and "▁" alone is
   * a piece, so a token starts at every mark and none spans one; the Unigram lattice's best path to a mark
   * therefore depends only on the text before it (ties broken the same way, bar a floating-point tie between
   * two segmentations whose scores differ by less than a rounding step). The prefix keeps maxLength + 1 marks,
   * each starting a token, so it still yields more than maxLength ids and reads as cut.
   */
  cutText(text: string, maxLength: number): string {
    if (!this.cutAtSpaces) return text;
    let at = -1;
    for (let n = 0; n < maxLength + 2; n++) {
      at = text.indexOf(' ', at + 1);
      if (at < 0) return text;
    }
    return text.slice(0, at);
  }

  private frame: { prefix: number[]; suffix: number[] } | undefined;

  /**
   * The special tokens a single sequence gets before and after its text: from the add_bos/add_eos flags when
   * given, otherwise found once by encoding a probe with and without tokenizer.json's post-processor.
   */
  private specialFrame(): { prefix: number[]; suffix: number[] } {
    if (this.frame) return this.frame;
    if (this.addFlags) {
      const { bos, eos } = this.special;
      this.frame = {
        prefix: this.addFlags.bos && bos !== undefined ? [bos] : [],
        suffix: this.addFlags.eos && eos !== undefined ? [eos] : [],
      };
      return this.frame;
    }
    const probe = 'a';
    const bare = this.hf.encode(probe, { add_special_tokens: false }).ids;
    const full = this.hf.encode(probe, { add_special_tokens: true }).ids;
    for (let i = 0; i + bare.length <= full.length; i++) {
      if (bare.every((id, j) => full[i + j] === id)) {
        this.frame = { prefix: full.slice(0, i), suffix: full.slice(i + bare.length) };
        return this.frame;
      }
    }
    throw new FfmergeError('INVALID_CONFIG', "tokenizer.json's post-processor alters the text's own tokens; ffmerge cannot place special tokens");
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const list = Array.from(ids);
    const bad = list.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= this.vocabSize);
    if (bad >= 0) throw new FfmergeError('INVALID_ARGUMENT', `token id ${list[bad]} is outside the vocabulary (0..${this.vocabSize - 1})`);
    // no ids are no text, as in Python (the library throws an untyped Error)
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }
}

/** The tokenizer_config the JS port is built with (transformers' defaults where the file is silent). */
export function hfTokenizerConfig(modelDir: string, tokConfig = readJson(path.join(modelDir, 'tokenizer_config.json'))): Json {
  return {
    ...tokConfig,
    clean_up_tokenization_spaces: tokConfig.clean_up_tokenization_spaces === true,
  };
}

const UNICODE_FORMS = new Set(['NFC', 'NFD', 'NFKC', 'NFKD']);

/**
 * Whether a text may be cut at a space before encoding (cutText) without changing the ids kept: a Unigram
 * model behind a Metaspace pre-tokenizer whose mark is one character, alone a piece and in no other piece
 * past its start; a normalizer that only applies Unicode forms (they keep U+0020 and never join a character
 * across it); added tokens without spaces that strip none around them; no tokenizer_config option that
 * rewrites spaces. Anything else is encoded whole.
 */
function spaceCutSafe(t: Json, tokConfig: Json): boolean {
  const model = t.model as Json | undefined;
  const pre = t.pre_tokenizer as Json | null | undefined;
  const norm = t.normalizer as Json | null | undefined;
  if (model?.type !== 'Unigram' || !Array.isArray(model.vocab) || pre?.type !== 'Metaspace') return false;
  const mark = typeof pre.replacement === 'string' ? pre.replacement : '\u2581';
  if ([...mark].length !== 1 || (typeof pre.str_rep === 'string' && pre.str_rep !== mark)) return false;
  const forms = (n: Json | null | undefined): boolean =>
    n === null || n === undefined || UNICODE_FORMS.has(n.type as string) || (n.type === 'Sequence' && Array.isArray(n.normalizers) && (n.normalizers as Json[]).every(forms));
  if (!forms(norm)) return false;
  if (tokConfig.remove_space === true || tokConfig.do_lowercase_and_remove_accent === true) return false;
  const added = Array.isArray(t.added_tokens) ? (t.added_tokens as Json[]) : [];
  if (!added.every((a) => typeof a?.content === 'string' && !/\s/.test(a.content) && a.lstrip !== true && a.rstrip !== true)) return false;
  const pieces = (model.vocab as unknown[]).map((e) => (Array.isArray(e) ? e[0] : undefined));
  return pieces.includes(mark) && pieces.every((p) => typeof p === 'string' && !p.slice(1).includes(mark));
}

/**
 * `text` ready to be encoded and cut to `maxLength` ids: the same ids, from a prefix when the tokenizer
 * allows (a line of half a million characters is cut to the words it keeps, not encoded whole). A text still
 * too long for the tokenizer library is INVALID_DATA naming `what` (say "line 3 of test.en"), found here
 * rather than later where no line is known.
 */
export function textForTokens(tokenizer: Tokenizer, text: string, maxLength: number, what: string): string {
  const cut = tokenizer instanceof ModelTokenizer ? tokenizer.cutText(text, maxLength) : text;
  if (cut.length > MAX_SENTENCE_CHARS) {
    throw new FfmergeError(
      'INVALID_DATA',
      `${what}: a text of ${text.length.toLocaleString('en-US')} characters with too few spaces to cut it at is longer than the ${MAX_SENTENCE_CHARS.toLocaleString('en-US')} ffmerge encodes for one sentence (its ids are cut to ${maxLength} anyway): split or shorten it`,
    );
  }
  if (cut.length > LONG_TEXT) {
    try {
      tokenizer.encode(cut, { maxLength });
    } catch (e) {
      if (e instanceof FfmergeError && e.code === 'INVALID_DATA') throw new FfmergeError('INVALID_DATA', `${what}: ${e.message}`, { cause: e });
      throw e;
    }
  }
  return cut;
}

/**
 * The longest sentence textForTokens encodes, after its cut at spaces: only its first maxLength ids are kept, so
 * a longer one is no sentence, and the library spends seconds on it before a stack overflow.
 */
const MAX_SENTENCE_CHARS = 1_000_000;

/** Texts longer than this (characters) are test-encoded by textForTokens, so a failure names its line. */
const LONG_TEXT = 1 << 16;

/** A Tokenizer argument (from loadTokenizer): anything without encode and decode is INVALID_ARGUMENT, naming `what`. */
export function checkTokenizer(t: unknown, what: string): asserts t is Tokenizer {
  const x = t as Partial<Tokenizer> | null;
  if (typeof x !== 'object' || x === null || typeof x.encode !== 'function' || typeof x.decode !== 'function') {
    throw new FfmergeError('INVALID_ARGUMENT', `${what} must be a Tokenizer (from loadTokenizer) (got ${showValue(t)})`);
  }
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'config.json'];

/** The files loadTokenizer reads, by inode, size and modification time ("-" for one that is not there). */
function tokenizerStamp(dir: string): string {
  return TOKENIZER_FILES.map((f) => {
    try {
      const s = fs.statSync(path.join(dir, f));
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return '-';
    }
  }).join('|');
}

/** Loads `modelDir/tokenizer.json` with its tokenizer_config.json / special_tokens_map.json / config.json. */
export async function loadTokenizer(modelDir: string): Promise<Tokenizer> {
  checkPath(modelDir, 'loadTokenizer(modelDir): modelDir');
  // a folder that is not there is DATA_NOT_FOUND, as loadModel and inspectModel say; a folder without the file
  // is the model's fault, INVALID_CONFIG below
  checkFolder(modelDir, 'model directory', 'tokenizer.json');
  // taken before the files are read: a file changed while they are read differs from it too
  const stamp = tokenizerStamp(modelDir);
  const tokenizerJson = readJson(path.join(modelDir, 'tokenizer.json'), true);
  const problem = tokenizerJsonProblem(tokenizerJson, path.join(modelDir, 'tokenizer.json'));
  if (problem !== undefined) throw new FfmergeError('INVALID_CONFIG', problem);
  const tokConfig = readJson(path.join(modelDir, 'tokenizer_config.json'));
  const specialMap = readJson(path.join(modelDir, 'special_tokens_map.json'));
  const modelConfig = readJson(path.join(modelDir, 'config.json'));

  const hfConfig = hfTokenizerConfig(modelDir, tokConfig);
  let hf: HFTokenizer;
  try {
    hf = new HFTokenizer(tokenizerJson, hfConfig);
  } catch (e) {
    throw new FfmergeError('INVALID_CONFIG', `${path.join(modelDir, 'tokenizer.json')} could not be loaded: ${(e as Error).message}`, { cause: e });
  }

  const special: SpecialTokenIds = {};
  for (const key of ['bos', 'eos', 'pad', 'unk'] as const) {
    // a token named by the tokenizer's files, else config.json's id
    const tok = tokenString(tokConfig[`${key}_token`]) ?? tokenString(specialMap[`${key}_token`]);
    const id = tok !== undefined ? hf.token_to_id(tok) : modelConfig[`${key}_token_id`];
    if (tok !== undefined && id === undefined) {
      throw new FfmergeError('INVALID_CONFIG', `${modelDir}: ${key}_token "${tok}" is not in tokenizer.json's vocabulary`);
    }
    if (typeof id === 'number' && Number.isInteger(id) && id >= 0) special[key] = id;
  }

  const bosFlag = tokConfig.add_bos_token;
  const eosFlag = tokConfig.add_eos_token;
  const addFlags =
    typeof bosFlag === 'boolean' || typeof eosFlag === 'boolean'
      ? { bos: bosFlag === true, eos: eosFlag === true }
      : undefined;
  return new ModelTokenizer(hf, special, addFlags, spaceCutSafe(tokenizerJson, tokConfig), path.resolve(modelDir), stamp);
}

/**
 * The folder a tokenizer from loadTokenizer was loaded from, while its files are as they were then (a worker
 * loading from it gets the same tokenizer); undefined for any other Tokenizer, or once the folder has changed.
 */
export function tokenizerDirOf(t: Tokenizer): string | undefined {
  return t instanceof ModelTokenizer && tokenizerStamp(t.dir) === t.stamp ? t.dir : undefined;

}
