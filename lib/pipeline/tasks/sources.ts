/**
 * Reading the image and sentence-pair sources the image-classification and translation tasks take (also
 * used by `ffmerge eval`).
 */
import * as fs from 'node:fs';
import { FfmergeError, showValue } from '../../errors';
import { classNamesFromConfig, conformImages, loadIdxImages, loadImageFolder, type ImagePreprocessor, type ImageSet } from '../../data/images';
import { collectPairs, streamParallel, streamParallelTsv, type SentencePair } from '../../data/parallel';
import type { ImageSource, ParallelSource } from '../options';
import { checkDataFile } from '../data';
import { runningCount, type JobOptions } from '../../native/job';
import { seededOrder } from '../../data/shuffle';
import { numLabels } from '../../model/architectures/config';
import { sameData, sameDataPhrase, type SameData } from '../../data/same-data';

/**
 * Whether v holds the keys of exactly one of the forms, each a string, and nothing else. A key of another
 * form, even undefined ({ images, labels, folder: undefined }), is refused: two forms at once would use one silently.
 */
function hasForm(v: unknown, forms: readonly (readonly string[])[]): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const keys = Object.keys(v).sort().join();
  return forms.some((f) => [...f].sort().join() === keys && f.every((k) => typeof (v as Record<string, unknown>)[k] === 'string'));
}

export const isImageSource = (v: unknown): v is ImageSource => hasForm(v, [['folder'], ['images', 'labels']]);
export const isParallelSource = (v: unknown): v is ParallelSource => hasForm(v, [['tsv'], ['source', 'target']]);

/** A source as a user named it, for messages. */
export function describeSource(src: ImageSource | ParallelSource): string {
  return 'folder' in src ? src.folder : 'images' in src ? `${src.images} / ${src.labels}` : 'tsv' in src ? src.tsv : `${src.source} / ${src.target}`;
}

/**
 * An optional source option (`what`) of the shape `is` accepts (else `shape` says what it should be), whose
 * files exist: checked before any model is loaded.
 */
export function checkSource(v: unknown, what: string, is: (v: unknown) => v is ImageSource | ParallelSource, shape: string): void {
  if (v === undefined) return;
  if (!is(v)) throw new FfmergeError('INVALID_ARGUMENT', `${what} for ${shape}, with no other key (got ${typeof v === 'object' && v !== null ? `keys ${Object.keys(v).join(', ') || 'none'}` : showValue(v)})`);
  checkSourceFiles(v);
}

/**
 * A size given explicitly (`key`, flag --<split>-size) is used in full or refused (README: nothing asked for is
 * cut silently); only a default ("the whole split up to N") is clamped to the `n` units `available` holds.
 */
export function checkSize(asked: number | undefined, key: string, n: number, available: string): void {
  if (asked !== undefined && asked > n) {
    throw new FfmergeError('INVALID_ARGUMENT', `${key} (--${key.replace(/[A-Z].*/, '')}-size) ${asked} is more than the ${n} ${available}: ask for at most ${n}, or give more data`);
  }
}

/** Files of a source exist (checked before any model is loaded); `what` names the split ("validation data file …"). */
export function checkSourceFiles(src: ImageSource | ParallelSource, what = 'data'): void {
  for (const f of Object.values(src)) checkDataFile(f, what);
}

/**
 * Whether two sources are the same data, by their input file (images, folder, tsv, source): one file under
 * any path, or a byte-identical copy of it (sameData). A validation set that is the calibration file read
 * again overlaps the calibration examples, which then score the candidates they shaped.
 */
export function sameSource(a: ImageSource | ParallelSource, b: ImageSource | ParallelSource): Promise<SameData> {
  const input = (s: ImageSource | ParallelSource): string =>
    'folder' in s ? s.folder : 'images' in s ? s.images : 'tsv' in s ? s.tsv : s.source;
  // parallel text is read as text: a CRLF copy of a corpus is the corpus (image files are compared as bytes)
  return sameData(input(a), input(b), { text: !('folder' in a || 'images' in a) });
}

/**
 * Test data must be held out: data that shaped the merge (calibration) or chose it (validation) would inflate
 * the test number. `given`: [split, source] (a split without data of its own is left out: validation then is
 * the calibration data, one comparison covers both); `same(source)`: whether the test data is that source.
 */
export async function checkHeldOut(given: [string, unknown][], same: (src: unknown) => Promise<SameData | undefined>, words: { test: string; give: string }): Promise<void> {
  for (const [what, src] of given) {
    const hit = src === undefined ? undefined : await same(src);
    if (hit) throw new FfmergeError('INVALID_ARGUMENT', `the test ${words.test} ${sameDataPhrase(hit, what)}, so the test number would not be held out: give test ${words.give} the run neither calibrates nor validates on`);
  }
}

/**
 * An image set from a source. Folder classes map to the model's labels: a sub-folder is one of its class
 * names (config.json id2label) or a class index ("0".."num_labels-1"); any other sub-folder is INVALID_DATA
 * (loadImageFolder), never scored against a label by its sorted position. A folder's images — read class by
 * class — are put in a fixed pseudo-random order, so that leading and trailing ranges (calibration,
 * validation) hold every class.
 */
export async function loadImageSource(src: ImageSource, pre: ImagePreprocessor, modelConfig: Record<string, unknown> = {}, opts: JobOptions = {}): Promise<ImageSet> {
  checkSourceFiles(src);
  if ('folder' in src) {
    if (!fs.statSync(src.folder).isDirectory()) {
      throw new FfmergeError('INVALID_DATA', `${src.folder} is not an image folder (expected <class>/<image>.png|.jpg sub-folders)`);
    }
    const classNames = classNamesFromConfig(modelConfig);
    const classCount = numLabels(modelConfig);
    // transformers refuses such a config too; here it would make folder names and label indices disagree
    if (classNames && classNames.length !== classCount) {
      throw new FfmergeError('INVALID_CONFIG', `config.json: id2label names ${classNames.length} classes but num_labels is ${classCount}`);
    }
    return shuffledImages(await loadImageFolder(src.folder, pre, { ...(classNames ? { classNames } : {}), classCount, ...opts }));
  }
  return loadIdxImages(src.images, src.labels, { signal: opts.signal });
}

/**
 * Reads image sources one after another, each conformed to the preprocessor, under one 'images' count that
 * never goes back (a task's calibration, validation and test folders), as the LM task counts 'tokenize'.
 */
export function imageReader(pre: ImagePreprocessor, modelConfig: Record<string, unknown>, job: JobOptions): (src: ImageSource) => Promise<ImageSet> {
  const count = runningCount('images', job.onProgress);
  const opts: JobOptions = { signal: job.signal, onProgress: count.onProgress };
  return async (src) => {
    const set = await conformImages(await loadImageSource(src, pre, modelConfig, opts), pre);
    count.next();
    return set;
  };
}

/** The images in a fixed order drawn by a seeded LCG (Fisher–Yates): the same folder gives the same order. */
function shuffledImages(set: ImageSet): ImageSet {
  const order = seededOrder(set.count, 0x5eed);
  const per = set.height * set.width * set.channels;
  const pixels = new Uint8Array(set.pixels.length);
  order.forEach((from, to) => pixels.set(set.pixels.subarray(from * per, (from + 1) * per), to * per));
  return { ...set, pixels, ...(set.labels ? { labels: Int32Array.from(order, (from) => set.labels![from]!) } : {}) };
}

/**
 * The first `keep` pairs of a parallel source after `skip` (default all), and how many pairs it holds: the rest is read to
 * its end, checked (aligned, no side blank alone) and counted, never kept, so memory is bounded by the pairs
 * used, not by the corpus.
 */
export async function loadParallelSource(src: ParallelSource, opts: Pick<JobOptions, 'signal'> & { keep?: number; skip?: number } = {}): Promise<{ pairs: SentencePair[]; total: number }> {
  checkSourceFiles(src);
  // `skip`: the pairs before it are counted, not kept (eval --start)
  return collectPairs('tsv' in src ? streamParallelTsv(src.tsv) : streamParallel(src.source, src.target), opts);
}
