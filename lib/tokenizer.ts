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
import { MAX_JSON_FILE_BYTES, readRegularFileSync } from './files';
import * as path from 'node:path';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { FfmergeError, showValue } from './errors';
import { checkPath } from './arguments';

export interface EncodeOptions {
  /** Add the model's special tokens (BOS/EOS per its post-processor or add_bos/eos flags). Default true. */
  addSpecialTokens?: boolean;
  /**
   * Keep at most this many ids, special tokens included: the text's tokens are cut from the right and the
   * special tokens kept (transformers' `truncation=True, max_length=...` for one sequence).
   */
  maxLength?: number;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, pad, ...) from the text. Default false. */
  skipSpecialTokens?: boolean;
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

function readJson(file: string, required: boolean): Json | undefined {
  let text: string;
  try {
    text = readRegularFileSync(file, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES);
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FfmergeError('INVALID_CONFIG', `${path.dirname(file)} has no ${path.basename(file)}; the tokenizer needs it`);
    }
    throw new FfmergeError('IO_ERROR', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new FfmergeError('INVALID_CONFIG', `${file} is not a valid JSON object (${(e as Error).message})`);
  }
}

/** A token given as a string or as an AddedToken object {content: ...}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

class ModelTokenizer implements Tokenizer {
  readonly vocabSize: number;

  constructor(
    private readonly hf: HFTokenizer,
    readonly special: Readonly<SpecialTokenIds>,
    /** Explicit add_bos/add_eos flags; undefined leaves special tokens to tokenizer.json's post-processor. */
    private readonly addFlags: { bos: boolean; eos: boolean } | undefined,
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
    const content = this.hf.encode(text, { add_special_tokens: false }).ids;
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
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new FfmergeError('INVALID_ARGUMENT', `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      }
    }
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
export function hfTokenizerConfig(modelDir: string, tokConfig: Json = readJson(path.join(modelDir, 'tokenizer_config.json'), false) ?? {}): Json {
  return {
    ...tokConfig,
    clean_up_tokenization_spaces: typeof tokConfig.clean_up_tokenization_spaces === 'boolean' ? tokConfig.clean_up_tokenization_spaces : false,
  };
}

/** Loads `modelDir/tokenizer.json` with its tokenizer_config.json / special_tokens_map.json / config.json. */
/**
 * Token ids in tokenizer.json must be small non-negative integers: the tokenizer library sizes and walks
 * tables by the largest id, so one id of 2^31 in a vocabulary of 512 made a 3 KB text take minutes to encode.
 * Real vocabularies are dense; the bound (4× the entries, plus slack for added tokens) only refuses damage.
 */
function checkTokenIds(t: Json, file: string): void {
  const model = t.model as Json | undefined;
  const vocab = model && typeof model.vocab === 'object' && model.vocab !== null && !Array.isArray(model.vocab) ? (model.vocab as Json) : undefined;
  const added = Array.isArray(t.added_tokens) ? (t.added_tokens as unknown[]) : [];
  const entries = (vocab ? Object.keys(vocab).length : Array.isArray(model?.vocab) ? (model!.vocab as unknown[]).length : 0) + added.length;
  const limit = 4 * entries + 1024;
  const check = (id: unknown, what: string) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= limit) {
      throw new FfmergeError('INVALID_CONFIG', `${file}: ${what} has id ${showValue(id)}, not an integer in 0..${limit - 1} for a vocabulary of ${entries} entries`);
    }
  };
  if (vocab) for (const [tok, id] of Object.entries(vocab)) check(id, `token ${showValue(tok)}`);
  for (const a of added) check((a as Json | null)?.id, 'an added token');
}

/** A Tokenizer argument (from loadTokenizer): anything without encode and decode is INVALID_ARGUMENT, naming `what`. */
export function checkTokenizer(t: unknown, what: string): asserts t is Tokenizer {
  const x = t as Partial<Tokenizer> | null;
  if (typeof x !== 'object' || x === null || typeof x.encode !== 'function' || typeof x.decode !== 'function') {
    throw new FfmergeError('INVALID_ARGUMENT', `${what} must be a Tokenizer (from loadTokenizer) (got ${showValue(t)})`);
  }
}

export async function loadTokenizer(modelDir: string): Promise<Tokenizer> {
  checkPath(modelDir, 'loadTokenizer(modelDir): modelDir');
  const tokenizerJson = readJson(path.join(modelDir, 'tokenizer.json'), true)!;
  checkTokenIds(tokenizerJson, path.join(modelDir, 'tokenizer.json'));
  const tokConfig = readJson(path.join(modelDir, 'tokenizer_config.json'), false) ?? {};
  const specialMap = readJson(path.join(modelDir, 'special_tokens_map.json'), false) ?? {};
  const modelConfig = readJson(path.join(modelDir, 'config.json'), false) ?? {};

  const hfConfig = hfTokenizerConfig(modelDir, tokConfig);
  let hf: HFTokenizer;
  try {
    hf = new HFTokenizer(tokenizerJson, hfConfig);
  } catch (e) {
    throw new FfmergeError('INVALID_CONFIG', `${path.join(modelDir, 'tokenizer.json')} could not be loaded: ${(e as Error).message}`, { cause: e });
  }

  const special: SpecialTokenIds = {};
  for (const key of ['bos', 'eos', 'pad', 'unk'] as const) {
    const tok = tokenString(tokConfig[`${key}_token`]) ?? tokenString(specialMap[`${key}_token`]);
    if (tok !== undefined) {
      const id = hf.token_to_id(tok);
      if (id === undefined) {
        throw new FfmergeError('INVALID_CONFIG', `${modelDir}: ${key}_token "${tok}" is not in tokenizer.json's vocabulary`);
      }
      special[key] = id;
      continue;
    }
    const id = modelConfig[`${key}_token_id`];
    if (typeof id === 'number' && Number.isInteger(id) && id >= 0) special[key] = id;
  }

  const bosFlag = tokConfig.add_bos_token;
  const eosFlag = tokConfig.add_eos_token;
  const addFlags =
    typeof bosFlag === 'boolean' || typeof eosFlag === 'boolean'
      ? { bos: bosFlag === true, eos: eosFlag === true }
      : undefined;
  return new ModelTokenizer(hf, special, addFlags);
}
