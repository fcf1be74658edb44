/**
 * Image data for classifiers: MNIST/Fashion-MNIST idx files (gzip or raw) and image folders (one sub-folder per
 * class, JPEG/PNG, decoded with sharp), preprocessed the way a Hugging Face `preprocessor_config.json` says
 * (resize, rescale, normalize, channels) into float32 NCHW batches.
 *
 * Images are held as 8-bit NHWC (what files store; 1 byte per value keeps 60k MNIST images at 47 MB) and
 * converted to float per batch.
 */
import { MAX_JSON_FILE_BYTES, readRegularBytes, readRegularFile } from '../files';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as buffer from 'node:buffer';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { inflatedHead } from './text';
import { FfmergeError, abortError, showValue } from '../errors';
import { checkJobOptions, raceAbort, type JobOptions } from '../native/job';
import { checkArrayOf, checkInt, checkPath, isArrayOf, isObject } from '../arguments';
import { oneSide } from '../model/architectures/config';

/** Decoded 8-bit images, all the same size: pixels[((n*height + y)*width + x)*channels + c]. */
export interface ImageSet {
  count: number;
  height: number;
  width: number;
  channels: number;
  pixels: Uint8Array;
  /** Class index per image, when known. */
  labels?: Int32Array;
  /** Class names by index (image folders: the sub-folder names, sorted). */
  classNames?: string[];
}

/** What the model expects, from preprocessor_config.json (+ num_channels from config.json). */
export interface ImagePreprocessor {
  height: number;
  width: number;
  channels: number;
  /** Resize images of another size to height x width (bilinear); without it such images are an error. */
  doResize: boolean;
  /** Convert images with another channel count (grey <-> RGB, alpha dropped); without it such images are an error. */
  convertChannels: boolean;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  /** Per channel (one value is broadcast to all channels). */
  mean: number[];
  std: number[];
}

type Json = Record<string, unknown>;


function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json: ${what} must be a positive integer (got ${showValue(v)})`);
  }
  return v;
}

function numberList(v: unknown, fallback: number[], what: string): number[] {
  if (v === undefined || v === null) return fallback;
  const list = typeof v === 'number' ? [v] : v;
  if (!isArrayOf<number>(list, (x) => typeof x === 'number' && Number.isFinite(x)) || list.length === 0) {
    throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json: ${what} must be a number or a list of numbers (got ${showValue(v)})`);
  }
  return list as number[];
}

/**
 * A true/false key, `fallback` when absent. A string "true" or a 0/1 is refused rather than read as truthy: the
 * file was not written by Hugging Face, and guessing would change every pixel the model sees.
 */
function flag(pre: Json, key: string, fallback: boolean): boolean {
  const v = pre[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json: ${key} must be true or false (got ${showValue(v)})`);
  return v;
}

/**
 * transformers' ViTImageProcessor constructor defaults (IMAGENET_STANDARD_MEAN/STD = 0.5), for every key the
 * file leaves out: a file that omits image_mean still normalises in Python.
 */
const VIT_DEFAULTS = { doResize: true, size: 224, doRescale: true, rescaleFactor: 1 / 255, doNormalize: true, mean: [0.5], std: [0.5] } as const;

/** Processor classes whose constructor defaults are ViTImageProcessor's (the legacy feature extractor included). */
const VIT_PROCESSORS = new Set(['ViTImageProcessor', 'ViTImageProcessorFast', 'ViTFeatureExtractor']);

const DEFAULTED_KEYS = ['do_resize', 'size', 'do_rescale', 'rescale_factor', 'do_normalize', 'image_mean', 'image_std'] as const;

/**
 * Reads the image rules from a parsed preprocessor_config.json. `size` may be {height, width} or a number
 * (absent: config.json's image_size, else ViT's 224); the channel count comes from config.json's num_channels,
 * else from image_mean's length, else 3. A key left out takes ViTImageProcessor's default; a file naming
 * another processor class (image_processor_type), whose defaults may differ (DeiT's mean is ImageNet's, not
 * 0.5), must then give every such key itself, else INVALID_CONFIG. A key of the wrong type is INVALID_CONFIG.
 */
export function preprocessorFromConfig(pre: Json, modelConfig: Json = {}): ImagePreprocessor {
  if (!isObject(pre)) throw new FfmergeError('INVALID_ARGUMENT', `preprocessorFromConfig(pre, modelConfig): pre must be the parsed preprocessor_config.json, an object (got ${showValue(pre)})`);
  if (!isObject(modelConfig)) throw new FfmergeError('INVALID_ARGUMENT', `preprocessorFromConfig(pre, modelConfig): modelConfig must be the parsed config.json, an object (got ${showValue(modelConfig)})`);
  const type = pre.image_processor_type ?? pre.feature_extractor_type;
  if (type !== undefined) {
    if (typeof type !== 'string') throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json: image_processor_type must be a class name (got ${showValue(type)})`);
    const missing = DEFAULTED_KEYS.filter((k) => pre[k] === undefined && !(k === 'size' && modelConfig.image_size !== undefined));
    if (!VIT_PROCESSORS.has(type) && missing.length > 0) {
      throw new FfmergeError(
        'INVALID_CONFIG',
        `preprocessor_config.json names ${type}, whose defaults ffmerge does not know, and leaves out ${missing.join(', ')}: write them into the file (ffmerge knows ViTImageProcessor's)`,
      );
    }
  }
  let height: number;
  let width: number;
  // config.json's image_size as one side: a [height, width] pair of one side is that side
  const side = oneSide(modelConfig.image_size);
  const size = pre.size ?? side ?? VIT_DEFAULTS.size;
  const fromFile = pre.size !== undefined && pre.size !== null;
  if (typeof size === 'number') {
    height = width = positiveInt(size, fromFile ? 'size' : 'image_size (config.json)');
  } else if (isObject(size)) {
    if (size.height === undefined && size.width === undefined) {
      // {shortest_edge} means aspect-preserving resize + center crop (other processors); ViT's is {height, width}
      throw new FfmergeError(
        'INVALID_CONFIG',
        `preprocessor_config.json: size ${showValue(size)} is not supported; ffmerge resizes to {"height", "width"}`,
      );
    }
    height = positiveInt(size.height, 'size.height');
    width = positiveInt(size.width, 'size.width');
  } else {
    const from = fromFile ? 'preprocessor_config.json: size' : 'config.json: image_size';
    throw new FfmergeError('INVALID_CONFIG', `${from} must be a number of pixels or {"height": …, "width": …} (got ${showValue(size)})`);
  }
  // The model takes image_size pixels: a preprocessor that resizes to another size is refused before any decoding
  if (fromFile && typeof side === 'number' && (height !== side || width !== side)) {
    throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json resizes images to ${width}x${height}, but config.json's image_size is ${side}: the model takes ${side}x${side} images`);
  }
  const meanRaw = numberList(pre.image_mean, [...VIT_DEFAULTS.mean], 'image_mean');
  const stdRaw = numberList(pre.image_std, [...VIT_DEFAULTS.std], 'image_std');
  const channels =
    modelConfig.num_channels !== undefined
      ? positiveInt(modelConfig.num_channels, 'num_channels (config.json)')
      : pre.image_mean !== undefined && pre.image_mean !== null
        ? meanRaw.length
        : 3;
  const perChannel = (list: number[], what: string): number[] => {
    if (list.length === channels) return list;
    if (list.length === 1) return new Array<number>(channels).fill(list[0]!);
    throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json: ${what} has ${list.length} values for ${channels} channels`);
  };
  const std = perChannel(stdRaw, 'image_std');
  if (std.some((s) => s === 0)) throw new FfmergeError('INVALID_CONFIG', 'preprocessor_config.json: image_std has a zero');
  const rescaleFactor = pre.rescale_factor === undefined ? VIT_DEFAULTS.rescaleFactor : pre.rescale_factor;
  if (typeof rescaleFactor !== 'number' || !Number.isFinite(rescaleFactor)) {
    throw new FfmergeError('INVALID_CONFIG', `preprocessor_config.json: rescale_factor must be a number (got ${showValue(pre.rescale_factor)})`);
  }
  for (const key of ['do_convert_rgb', 'do_convert_grayscale']) {
    // null is how transformers writes "not set" for these two (ViTImageProcessor's do_convert_rgb defaults to None)
    if (pre[key] !== null) flag(pre, key, false);
  }
  return {
    height,
    width,
    channels,
    doResize: flag(pre, 'do_resize', VIT_DEFAULTS.doResize),
    convertChannels: pre.do_convert_rgb === true || pre.do_convert_grayscale === true,
    doRescale: flag(pre, 'do_rescale', VIT_DEFAULTS.doRescale),
    rescaleFactor,
    doNormalize: flag(pre, 'do_normalize', VIT_DEFAULTS.doNormalize),
    mean: perChannel(meanRaw, 'image_mean'),
    std,
  };
}

/**
 * An ImagePreprocessor argument (from loadPreprocessor or preprocessorFromConfig): checked before use, so that
 * null or a hand-made object missing a field is INVALID_ARGUMENT, not a TypeError deep in decoding.
 */
export function checkPreprocessor(v: unknown, what: string): asserts v is ImagePreprocessor {
  const p = v as Partial<ImagePreprocessor> | null;
  const posInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x > 0;
  const ok =
    typeof p === 'object' && p !== null &&
    posInt(p.height) && posInt(p.width) && posInt(p.channels) &&
    typeof p.doResize === 'boolean' && typeof p.convertChannels === 'boolean' && typeof p.doRescale === 'boolean' && typeof p.doNormalize === 'boolean' &&
    typeof p.rescaleFactor === 'number' && Number.isFinite(p.rescaleFactor) &&
    isArrayOf<number>(p.mean, (x) => typeof x === 'number' && Number.isFinite(x)) && p.mean.length === p.channels &&
    isArrayOf<number>(p.std, (x) => typeof x === 'number' && Number.isFinite(x) && x !== 0) && p.std.length === p.channels;
  if (!ok) throw new FfmergeError('INVALID_ARGUMENT', `${what} must be an ImagePreprocessor from loadPreprocessor or preprocessorFromConfig (got ${showValue(v)})`);
}

/**
 * Every label of `set` is a class of a classifier with `classes` outputs: a label past them (a label file for
 * another data set) would be scored as a wrong answer and lower accuracy without a word, so it is INVALID_DATA,
 * before any model work. `name` says where the labels come from.
 */
export function checkLabels(set: ImageSet, classes: number, name = 'the image data'): void {
  const labels = set.labels;
  if (!labels) return;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (l < 0 || l >= classes) {
      throw new FfmergeError(
        'INVALID_DATA',
        `label ${l} (image ${i} of ${name}) is outside the model's ${classes} classes${set.classNames ? ` (image folder classes: ${set.classNames.join(', ')})` : ''}`,
      );
    }
  }
}

/** Loads `<dir>/preprocessor_config.json` (and config.json for num_channels/image_size). */
export async function loadPreprocessor(dir: string): Promise<ImagePreprocessor> {
  checkPath(dir, 'loadPreprocessor(dir): dir');
  const read = async (name: string, required: boolean): Promise<Json> => {
    const file = path.join(dir, name);
    let text: string;
    try {
      text = await readRegularFile(file, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES);
    } catch (e) {
      if (e instanceof FfmergeError) throw e;
      if (!required) return {};
      throw new FfmergeError('DATA_NOT_FOUND', `${file} not found: an image model needs its preprocessor_config.json`, { cause: e });
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new FfmergeError('INVALID_CONFIG', `${file} is not valid JSON`, { cause: e });
    }
    if (!isObject(v)) throw new FfmergeError('INVALID_CONFIG', `${file} is not a JSON object`);
    return v;

  };
  return preprocessorFromConfig(await read('preprocessor_config.json', true), await read('config.json', false));
}

// ---------------------------------------------------------------------------------------------------- idx files

/**
 * The bytes of a regular file, read whole: /dev/zero or a FIFO is refused (INVALID_DATA, as lib/files.ts
 * refuses them); a missing or unreadable file is DATA_NOT_FOUND.
 */
async function readImageBytes(file: string): Promise<Buffer> {
  try {
    return await readRegularBytes(file, 'INVALID_DATA');
  } catch (e) {
    if (e instanceof FfmergeError) throw e;
    throw new FfmergeError('DATA_NOT_FOUND', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * An idx file's bytes, inflated when it is gzip-compressed, but only as much as its header declares (a small
 * gzip bomb must not take gigabytes). A file named .gz that is not gzip is refused, as the text loaders do.
 */
async function readMaybeGzip(file: string): Promise<Buffer> {
  const buf = await readImageBytes(file);
  const gzip = buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
  if (!gzip && /\.gz$/i.test(file)) throw new FfmergeError('INVALID_DATA', `${file} is named .gz but is not gzip-compressed`);
  if (!gzip) return buf;
  const fail = (e: unknown) => new FfmergeError('INVALID_DATA', `${file} looks gzip-compressed but does not decompress: ${(e as Error).message}`, { cause: e });
  // the longest idx header: 255 dimensions
  const { head } = await inflatedHead(Readable.from([buf]), 4 + 4 * 255).catch((e: unknown) => {
    throw fail(e);
  });
  // one byte past the declared size is enough to say the file holds more (parseIdx says how much it declares)
  const declared = idxDeclaredBytes(head);
  const limit = Math.min(declared === undefined ? Infinity : declared + 1, buffer.constants.MAX_LENGTH);
  try {
    // on the thread pool: inflating Fashion-MNIST in place blocks the event loop for ~250 ms
    return await promisify(zlib.gunzip)(buf, Number.isFinite(limit) ? { maxOutputLength: limit } : {});
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' && declared !== undefined) {
      throw new FfmergeError('INVALID_DATA', `${file} inflates to more than the ${declared.toLocaleString('en-US')} bytes its idx header declares`, { cause: e });
    }
    throw fail(e);
  }
}

/** The bytes an idx file of this header holds, header included; undefined when the header is not one. */
function idxDeclaredBytes(head: Uint8Array): number | undefined {
  if (head.length < 4 || head[0] !== 0 || head[1] !== 0 || head[3] === 0 || head.length < 4 + 4 * head[3]!) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let data = 1;
  for (let i = 0; i < head[3]!; i++) data *= view.getUint32(4 + 4 * i, false);
  return 4 + 4 * head[3]! + data;
}

/** An idx array of unsigned bytes (the only element type MNIST-style files use). */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** What an idx file is expected to hold: its name in words and its numbers of dimensions. */
interface IdxKind {
  what: string;
  ndims: readonly number[];
}
const IDX_IMAGES: IdxKind = { what: 'images [count, height, width(, channels)]', ndims: [3, 4] };
const IDX_LABELS: IdxKind = { what: 'labels [count]', ndims: [1] };

/**
 * Parses idx bytes: magic 0x00 0x00 <type> <ndims>, ndims big-endian uint32 sizes, then the data. With `kind`, a
 * header of another number of dimensions is refused before its sizes are read (an image file given as labels).
 */
export function parseIdx(buf: Uint8Array, name = 'idx data', kind?: IdxKind): IdxArray {
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) {
    throw new FfmergeError('INVALID_DATA', `${name} is not an idx file (bad magic number)`);
  }
  const type = buf[2]!;
  const ndims = buf[3]!;
  if (type !== 0x08) {
    throw new FfmergeError('INVALID_DATA', `${name}: idx element type 0x${type.toString(16)} is not supported (only unsigned bytes, 0x08)`);
  }
  if (ndims === 0 || buf.length < 4 + 4 * ndims) {
    throw new FfmergeError('INVALID_DATA', `${name}: idx header is truncated or has no dimensions`);
  }
  if (kind && !kind.ndims.includes(ndims)) {
    const other = kind === IDX_LABELS ? ` (${ndims === 3 || ndims === 4 ? 'an image file?' : 'not labels'})` : ndims === 1 ? ' (a label file?)' : '';
    throw new FfmergeError('INVALID_DATA', `${name}: expected idx ${kind.what}, but its header has ${ndims} dimension${ndims === 1 ? '' : 's'}${other}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(view.getUint32(4 + 4 * i, false));
  // exact: a product of four 32-bit sizes is past what a double holds exactly
  const total = dims.reduce((n, d) => n * BigInt(d), 1n);
  const start = 4 + 4 * ndims;
  if (BigInt(buf.length - start) !== total) {
    throw new FfmergeError('INVALID_DATA', `${name}: idx header says ${dims.join('x')} = ${total} bytes of data but the file holds ${buf.length - start}`);
  }
  return { dims, data: buf.subarray(start, start + Number(total)) };
}

async function readIdx(file: string, kind?: IdxKind): Promise<IdxArray> {
  return parseIdx(await readMaybeGzip(file), file, kind);
}

/**
 * MNIST/Fashion-MNIST: images [n, h, w] (or [n, h, w, c]) and optional labels [n]. Both files are read and
 * inflated off the main thread; `signal` is honoured between the steps (options.onProgress is not called:
 * the read is one step, tens of milliseconds for Fashion-MNIST).
 */
export async function loadIdxImages(imagesFile: string, labelsFile?: string, opts: Pick<JobOptions, 'signal'> = {}): Promise<ImageSet> {
  const what = 'loadIdxImages(imagesFile, labelsFile, options)';
  checkPath(imagesFile, `${what}: imagesFile`);
  if (labelsFile !== undefined) checkPath(labelsFile, `${what}: labelsFile`);
  checkJobOptions(opts, `${what}: options`, []);
  const { signal } = opts;
  if (signal?.aborted) throw abortError(signal);
  // each read races the signal (a read is one step of ~0.6 s); what is left of it finishes off the JS thread
  const img = await raceAbort(readIdx(imagesFile, IDX_IMAGES), signal);
  const [count, height, width] = img.dims as [number, number, number];
  if (count === 0) throw new FfmergeError('INVALID_DATA', `${imagesFile} holds no images (its idx header says 0)`);
  const set: ImageSet = { count, height, width, channels: img.dims[3] ?? 1, pixels: img.data };
  if (labelsFile !== undefined) {
    const lab = await raceAbort(readIdx(labelsFile, IDX_LABELS), signal);
    if (lab.dims[0] !== count) {
      throw new FfmergeError('INVALID_DATA', `${labelsFile}: ${lab.dims.join('x')} labels for ${count} images`);
    }
    set.labels = Int32Array.from(lab.data);
  }
  if (signal?.aborted) throw abortError(signal);
  return set;
}

// ------------------------------------------------------------------------------------------------ image folders

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff']);
/** Images torchvision's ImageFolder reads and sharp cannot decode: refused by name, or a class would silently lose them. */
const UNREADABLE_IMAGE_EXTENSIONS = new Set(['.bmp', '.ppm', '.pgm']);

// sharp's package "types" points at its ESM typings (default export); at run time require() returns the function.
type Sharp = typeof import('sharp').default;

function loadSharp(): Sharp {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('sharp') as Sharp & { default?: Sharp };
    return mod.default ?? mod;
  } catch (e) {
    // an optional dependency: only image folders need it, and an install where it cannot be built goes on without it
    if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new FfmergeError('NATIVE_LOAD_FAILED', 'image folders need the image library "sharp", an optional dependency that is not installed here: npm install sharp (idx files need no sharp)', { cause: e });
    }
    throw new FfmergeError('NATIVE_LOAD_FAILED', `the image library "sharp" failed to load: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
}

/** Decodes one image file (or raw 8-bit pixels) into exactly height x width x channels, following the rules. */
async function decodeToTarget(
  sharp: Sharp,
  input: Buffer | { data: Uint8Array; width: number; height: number; channels: number },
  pre: ImagePreprocessor,
  name: string,
): Promise<Uint8Array> {
  const raw = Buffer.isBuffer(input) ? undefined : input;
  // sharp throws at once on an empty buffer, and only when decoding pixels on a file cut after its header
  const unreadable = (e: unknown) => new FfmergeError('INVALID_DATA', `${name} is not a readable image: ${(e as Error).message}`, { cause: e });
  let img: ReturnType<Sharp>;
  let meta: { width?: number; height?: number; channels?: number; hasAlpha?: boolean; format?: string };
  try {
    img = raw
      ? sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: raw.channels as 1 | 2 | 3 | 4 } })
      : sharp(input as Buffer, { failOn: 'error' });
    meta = raw ? { width: raw.width, height: raw.height, channels: raw.channels, hasAlpha: false } : await img.metadata();
  } catch (e) {
    throw unreadable(e);
  }
  const colour = (meta.channels ?? 0) - (meta.hasAlpha ? 1 : 0);
  if (colour !== pre.channels && !pre.convertChannels) {
    throw new FfmergeError(
      'SHAPE_MISMATCH',
      `${name} has ${colour} colour channel(s) but the model takes ${pre.channels}, and preprocessor_config.json has no conversion rule: ` +
        `set "${pre.channels === 1 ? 'do_convert_grayscale' : 'do_convert_rgb'}": true there to convert` +
        // libwebp has no one-channel mode: a grey picture saved as WebP is RGB
        (meta.format === 'webp' && pre.channels === 1 ? ', or save the pictures as PNG (WebP stores even a grey picture as RGB)' : ''),
    );
  }
  if (meta.width !== pre.width || meta.height !== pre.height) {
    if (!pre.doResize) {
      throw new FfmergeError(
        'SHAPE_MISMATCH',
        `${name} is ${meta.width}x${meta.height} but the model takes ${pre.width}x${pre.height}, and preprocessor_config.json does not resize (do_resize is false)`,
      );
    }
    img = img.resize(pre.width, pre.height, { fit: 'fill', kernel: 'linear' });
  }
  img = img.removeAlpha();
  img = pre.channels === 1 ? img.greyscale() : img.toColourspace('srgb');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true }).catch((e: unknown) => {
    throw unreadable(e);
  });
  if (info.channels !== pre.channels || info.width !== pre.width || info.height !== pre.height) {
    throw new FfmergeError('INVALID_DATA', `${name} decoded to ${info.width}x${info.height}x${info.channels}, not ${pre.width}x${pre.height}x${pre.channels}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A class or folder name compared case-blind, with every run of other than letters and digits as one "_". */
function looseClassName(name: string): string {
  // NFC first: a folder named on macOS spells "é" as e + a combining accent
  return name.normalize('NFC').toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '_').replace(/^_|_$/g, '');
}

/**
 * An image folder: <dir>/<class>/<image>.{png,jpg,jpeg,webp,tif,tiff}. Without model classes, classes are the sub-folder
 * names in sorted order (torchvision ImageFolder's convention). With them (`classNames`, e.g. the model's
 * id2label, and/or `classCount`), each sub-folder must name a class or be a class index ("0".."n-1", as
 * MNIST-style folders are named), and maps to that label. A name matches exactly, or else case-blind with
 * punctuation and spaces alike ("t_shirt_top" for "T-shirt/top"); any other folder is INVALID_DATA, since its
 * images would be scored against a label that is not theirs. Every image is decoded to the preprocessor's size
 * and channel count.
 */
export async function loadImageFolder(dir: string, pre: ImagePreprocessor, opts: { classNames?: string[] | undefined; classCount?: number | undefined } & JobOptions = {}): Promise<ImageSet> {
  const what = 'loadImageFolder(dir, pre, options)';
  checkPath(dir, `${what}: dir`);
  checkPreprocessor(pre, `${what}: pre`);
  checkJobOptions(opts, `${what}: options`, ['classNames', 'classCount']);
  const { signal, onProgress } = opts;
  if (signal?.aborted) throw abortError(signal);
  if (opts.classNames !== undefined) checkArrayOf<string>(opts.classNames, `${what}: options.classNames`, 'class names (strings)', (e) => typeof e === 'string');
  checkInt(opts.classCount, `${what}: options.classCount`, 1);
  if (opts.classNames !== undefined && opts.classCount !== undefined && opts.classNames.length !== opts.classCount) {
    throw new FfmergeError('INVALID_ARGUMENT', `${what}: options.classNames has ${opts.classNames.length} names but options.classCount is ${opts.classCount}`);
  }
  let entries: fs.Dirent[];
  try {
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new FfmergeError('DATA_NOT_FOUND', `image folder ${dir} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  // A class folder may be a symlink to a folder: followed, since skipping would drop a whole class without a word.
  // A link that loops or points nowhere is refused for the same reason.
  const found: string[] = [];
  for (const e of entries) {
    if (e.isDirectory()) found.push(e.name);
    else if (e.isSymbolicLink()) {
      let st: fs.Stats;
      try {
        st = await fs.promises.stat(path.join(dir, e.name));
      } catch (err) {
        throw brokenLink(dir, showValue(e.name), err);
      }
      if (st.isDirectory()) found.push(e.name);
    }
  }
  found.sort(byCodePoint);
  const known = opts.classNames !== undefined || opts.classCount !== undefined;
  const count = opts.classCount ?? opts.classNames?.length ?? found.length;
  const classNames = opts.classNames ?? (known ? Array.from({ length: count }, (_, i) => String(i)) : found);
  // A class name that cannot be a folder name as written ("T-shirt/top") or that users spell another way
  // ("ankle_boot" for "Ankle boot") matches by its loose form; a loose form two classes share matches neither.
  const byLoose = new Map<string, number>();
  classNames.forEach((n, i) => {
    const key = looseClassName(n);
    if (key !== '') byLoose.set(key, byLoose.has(key) ? -1 : i); // "" (punctuation only) would match any such name
  });
  const folderOf = new Map<number, string>();
  for (const c of found) {
    const exact = classNames.indexOf(c);
    const loose = looseClassName(c);
    const byName = exact >= 0 ? exact : loose !== '' ? (byLoose.get(loose) ?? -1) : -1;
    // a canonical decimal index only ("07" or "1e1" is a name, not an index)
    const byIndex = /^(0|[1-9][0-9]{0,8})$/.test(c) && Number(c) < count ? Number(c) : -1;
    const label = byName >= 0 ? byName : byIndex;
    // id2label may give two classes one name: a folder of that name is theirs both, so neither
    // (a name written exactly as one class's alone is that class's)
    const sharing = classNames.flatMap((n, i) => (n === c || (exact < 0 && loose !== '' && looseClassName(n) === loose) ? [i] : []));
    if (byIndex < 0 && sharing.length > 1) {
      throw new FfmergeError(
        'INVALID_DATA',
        `image folder ${dir}: class folder ${showValue(c)} names classes ${sharing.join(' and ')} alike (${sharing.map((i) => showValue(classNames[i])).join(', ')}): the model's labels do not tell them apart, so name the folders by class index (0..${count - 1})`,
      );
    }
    if (label < 0) {
      throw new FfmergeError(
        'INVALID_DATA',
        `image folder ${dir}: class folder ${showValue(c)} is neither one of the model's classes (${showValue(classNames)}) nor a class index 0..${count - 1}`,
      );
    }
    // two spellings of one class ("Ankle boot" and "ankle-boot", or a name and its index): a mistake, not a split
    const other = folderOf.get(label);
    if (other !== undefined) {
      throw new FfmergeError('INVALID_DATA', `image folder ${dir}: class folders ${showValue(other)} and ${showValue(c)} both name class ${label} (${showValue(classNames[label])}); put its images in one folder`);
    }
    folderOf.set(label, c);
  }
  const files: { file: string; label: number }[] = [];
  const root = await fs.promises.realpath(dir);
  const empty: string[] = [];
  // every found folder has its label here, set in found's order
  for (const [label, c] of folderOf) {
    // A class folder linked to the image folder or above it holds the class folders, not images: refused, as is
    // any class folder without images in it or below it (torchvision's ImageFolder refuses it).
    const real = await fs.promises.realpath(path.join(dir, c));
    const rel = path.relative(real, root); // '' for the folder itself, no '..' for a folder above it ('/' too)
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
      throw new FfmergeError('INVALID_DATA', `image folder ${dir}: class folder ${showValue(c)} is a link to the image folder${root === real ? '' : ' or a folder above it'} (it loops)`);
    }
    const names = await imagesUnder(path.join(dir, c), dir);
    if (names.length === 0) empty.push(c);
    for (const file of names) files.push({ file, label });
  }
  if (files.length === 0) {
    throw new FfmergeError('DATA_NOT_FOUND', `image folder ${dir} holds no images (expected <class>/<name>.png|.jpg sub-folders)`);
  }
  if (empty.length > 0) {
    throw new FfmergeError('INVALID_DATA', `image folder ${dir}: class folder ${showValue(empty[0])} holds no images (.png/.jpg files in it or in its sub-folders): remove it, or put its class's images in it`);
  }
  const sharp = loadSharp();
  const per = pre.height * pre.width * pre.channels;
  const pixels = new Uint8Array(files.length * per);
  const labels = Int32Array.from(files, (f) => f.label);
  // A few images in flight, so that reads and decodes overlap on libuv's pool. Each lands at its own index. On an
  // error the others stop taking images; every earlier image is finished by then, so the error reported is the
  // first failing file's in order.
  let next = 0;
  let done = 0;
  let failure: { at: number; error: unknown } | undefined;
  const fail = (at: number, error: unknown) => {
    if (!failure || at < failure.at) failure = { at, error };
  };
  const decodeSome = async (): Promise<void> => {
    while (next < files.length && !failure && !signal?.aborted) {
      const i = next++;
      const { file } = files[i]!;
      try {
        pixels.set(await decodeToTarget(sharp, await readImageBytes(file), pre, file), i * per);
      } catch (error) {
        fail(i, error);
        return;
      }
      onProgress?.({ phase: 'images', done: ++done, total: files.length });
    }
  };
  onProgress?.({ phase: 'images', done: 0, total: files.length });
  await Promise.all(Array.from({ length: Math.min(IMAGES_IN_FLIGHT, files.length) }, decodeSome));
  if (failure) throw failure.error;
  if (signal?.aborted) throw abortError(signal);
  return { count: files.length, height: pre.height, width: pre.width, channels: pre.channels, pixels, labels, classNames };
}

/** Images decoded at once by one loadImageFolder: libuv's default pool size, so a call does not queue behind itself. */
const IMAGES_IN_FLIGHT = 4;

/**
 * Python's order of strings, which torchvision's sorted() uses: by code point. JavaScript's default compares
 * UTF-16 units, which puts a character above U+FFFF (a surrogate pair, 0xD800–0xDFFF) before U+E000–U+FFFF.
 */
export function byCodePoint(a: string, b: string): number {
  for (let i = 0; i < a.length && i < b.length; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++; // the pair's second unit, the same in both
  }
  return a.length - b.length;
}

/** A symbolic link in an image folder that stat() could not follow: one that loops, or points nowhere. */
function brokenLink(imageFolder: string, shown: string, err: unknown): FfmergeError {
  const loops = (err as NodeJS.ErrnoException).code === 'ELOOP';
  return new FfmergeError(loops ? 'INVALID_DATA' : 'DATA_NOT_FOUND', `image folder ${imageFolder}: ${shown} is a symbolic link that ${loops ? 'loops' : 'cannot be followed'} (${(err as Error).message})`, { cause: err });
}

/**
 * The images of one class folder, sub-folders included, in torchvision ImageFolder's order (its walk, followed
 * links and all: folders by path, each folder's files by name). A folder reached twice through links (a link to
 * a folder above it) is a loop, refused: torchvision would walk it forever.
 */
async function imagesUnder(classDir: string, imageFolder: string): Promise<string[]> {
  const byFolder: [string, string[]][] = [];
  const seen = new Set<string>();
  const walk = async (d: string): Promise<void> => {
    const real = await fs.promises.realpath(d);
    if (seen.has(real)) throw new FfmergeError('INVALID_DATA', `image folder ${imageFolder}: ${d} is a link to a folder that holds it (it loops)`);
    seen.add(real);
    const here: string[] = [];
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(d, { withFileTypes: true });
    } catch (e) {
      throw new FfmergeError('DATA_NOT_FOUND', `image folder ${imageFolder}: ${d} cannot be read: ${(e as Error).message}`, { cause: e });
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      const ext = path.extname(e.name).toLowerCase();
      const image = IMAGE_EXTENSIONS.has(ext);
      let isDir = e.isDirectory();
      if (e.isSymbolicLink()) {
        // a file link is read as its image, a folder link walked. One that loops or points nowhere is named when
        // it is named as an image (its image would be missing); any other is passed over, as os.walk lists it
        // among the files and torchvision's extension filter drops it.
        try {
          isDir = (await fs.promises.stat(p)).isDirectory();
        } catch (err) {
          if (!image) continue;
          throw brokenLink(imageFolder, p, err);
        }
      }
      if (isDir) await walk(p);
      else if (image) here.push(e.name);
      else if (UNREADABLE_IMAGE_EXTENSIONS.has(ext)) {
        throw new FfmergeError('INVALID_DATA', `image folder ${imageFolder}: ${p} is a ${ext.slice(1).toUpperCase()} image, which ffmerge cannot decode: convert the folder's images to PNG (or JPEG, WebP, TIFF)`);
      }
    }
    seen.delete(real); // two links to one folder are no loop (only a folder inside itself is)
    byFolder.push([d, here.sort(byCodePoint)]);
  };
  await walk(classDir);
  return byFolder.sort(([a], [b]) => byCodePoint(a, b)).flatMap(([d, names]) => names.map((n) => path.join(d, n)));
}

/**
 * The class names of a classifier in label-index order (config.json id2label), to pass as
 * loadImageFolder's classNames so that folder names map to the model's label indices.
 */
export function classNamesFromConfig(config: Json): string[] | undefined {
  const id2label = config.id2label;
  if (!id2label || typeof id2label !== 'object') return undefined;
  const entries = Object.entries(id2label as Record<string, unknown>).map(([k, v]) => [Number(k), String(v)] as const);
  if (entries.some(([k]) => !Number.isInteger(k) || k < 0)) {
    throw new FfmergeError('INVALID_CONFIG', 'config.json: id2label keys must be label indices');
  }
  const names: string[] = [];
  for (const [k, v] of entries) names[k] = v;
  if (names.length !== entries.length) throw new FfmergeError('INVALID_CONFIG', 'config.json: id2label skips label indices');
  return names;
}

/**
 * Makes an ImageSet (e.g. from idx files) match the preprocessor's size and channels: returned as is when it
 * already does, resized/converted with sharp when the rules allow, a SHAPE_MISMATCH error otherwise.
 */
export async function conformImages(set: ImageSet, pre: ImagePreprocessor): Promise<ImageSet> {
  checkPreprocessor(pre, 'conformImages(set, pre): pre');
  if (set.height === pre.height && set.width === pre.width && set.channels === pre.channels) return set;
  const name = `images of ${set.width}x${set.height}x${set.channels}`;
  if (set.channels !== pre.channels && !pre.convertChannels) {
    throw new FfmergeError('SHAPE_MISMATCH', `${name} have ${set.channels} channel(s) but the model takes ${pre.channels}, and preprocessor_config.json has no conversion rule`);
  }
  if ((set.height !== pre.height || set.width !== pre.width) && !pre.doResize) {
    throw new FfmergeError('SHAPE_MISMATCH', `${name} do not match the model's ${pre.width}x${pre.height}, and preprocessor_config.json does not resize (do_resize is false)`);
  }
  const sharp = loadSharp();
  const inPer = set.height * set.width * set.channels;
  const outPer = pre.height * pre.width * pre.channels;
  const pixels = new Uint8Array(set.count * outPer);
  for (let i = 0; i < set.count; i++) {
    const data = set.pixels.subarray(i * inPer, (i + 1) * inPer);
    pixels.set(await decodeToTarget(sharp, { data, width: set.width, height: set.height, channels: set.channels }, pre, `image ${i}`), i * outPer);
  }
  return { ...set, height: pre.height, width: pre.width, channels: pre.channels, pixels };
}

/**
 * Images [start, start+count) as float32 NCHW: x * rescale_factor (if do_rescale), then (x - mean[c]) / std[c]
 * (if do_normalize). The set must already match the preprocessor (conformImages).
 */
export function imagesToTensor(set: ImageSet, pre: ImagePreprocessor, start = 0, count = set.count - start): Float32Array {
  if (set.height !== pre.height || set.width !== pre.width || set.channels !== pre.channels) {
    throw new FfmergeError(
      'SHAPE_MISMATCH',
      `images are ${set.width}x${set.height}x${set.channels} but the model takes ${pre.width}x${pre.height}x${pre.channels}; call conformImages first`,
    );
  }
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > set.count) {
    throw new FfmergeError('INVALID_ARGUMENT', `image range [${start}, ${start + count}) is outside 0..${set.count}`);
  }
  const { height: h, width: w, channels: ch } = pre;
  const hw = h * w;
  const out = new Float32Array(count * ch * hw);
  const scale = pre.doRescale ? pre.rescaleFactor : 1;
  for (let c = 0; c < ch; c++) {
    // float32 arithmetic in the same order as Hugging Face's image processors: rescale, then normalize
    const mean = pre.doNormalize ? Math.fround(pre.mean[c]!) : 0;
    const std = pre.doNormalize ? Math.fround(pre.std[c]!) : 1;
    for (let n = 0; n < count; n++) {
      const src = (start + n) * hw * ch;
      const dst = (n * ch + c) * hw;
      for (let p = 0; p < hw; p++) {
        const x = Math.fround(set.pixels[src + p * ch + c]! * scale);
        out[dst + p] = pre.doNormalize ? Math.fround(x - mean) / std : x;
      }
    }
  }
  return out;
}
