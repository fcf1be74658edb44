/**
 * The training and validation images of `ffmerge finetune` on an image classifier, from the same flags
 * `compress` takes for it (--images/--labels idx files or --data <image folder>; --valid-images/--valid-labels
 * or --valid <folder>; --validation-start/--validation-size). Without a separate validation set the images
 * from --validation-start on validate (default 55000 on a 60000-image set such as Fashion-MNIST's train file,
 * else the last tenth) and training uses only the images before it, so no validation image is trained on.
 */
import { FfmergeError } from '../errors';
import { imagesToTensor, loadPreprocessor, type ImageSet } from '../data/images';
import { readConfig } from '../model/load';
import { checkSourceFiles, imageReader, sameSource } from '../pipeline/tasks/sources';
import { copyWords } from '../data/same-data';
import type { LabelledImages } from '../train/finetune';
import type { JobOptions } from '../native/job';
import { imageSourceFrom, int } from './flags';

export interface ImageFlags {
  data?: string;
  images?: string;
  labels?: string;
  valid?: string;
  validImages?: string;
  validLabels?: string;
  validationStart?: string;
  validationSize?: string;
  trainSize?: string;
}

/** The training and validation sources the flags name, checked (a missing or half-given one, or a file that is not there, is refused) before any is read. */
export function imageSources(o: ImageFlags) {
  const src = imageSourceFrom(o, '');
  if (!src) throw new FfmergeError('INVALID_ARGUMENT', 'finetune on an image model needs --images <idx images> --labels <idx labels>, or --data <image folder>');
  const validSrc = imageSourceFrom({ data: o.valid, images: o.validImages, labels: o.validLabels }, 'valid');
  checkSourceFiles(src, 'training data');
  if (validSrc) checkSourceFiles(validSrc, 'validation data');
  return { src, validSrc };
}

/** The images that train and those that validate, and a note for the log on which are which. */
export async function trainingImages(model: string, o: ImageFlags, job: JobOptions = {}) {
  const { src, validSrc } = imageSources(o);
  const pre = await loadPreprocessor(model);
  const config = await readConfig(model);
  const read = imageReader(pre, config, job);
  const load = async (s: typeof src): Promise<ImageSet> => {
    const set = await read(s);
    if (!set.labels) throw new FfmergeError('INVALID_DATA', 'finetune: the images have no labels');
    return set;
  };
  const set = await load(src);
  const take = (s: ImageSet, start: number, count: number): LabelledImages => ({
    pixels: imagesToTensor(s, pre, start, count),
    labels: s.labels!.slice(start, start + count),
  });
  const vset = validSrc ? await load(validSrc) : set;
  const vStart = int(o.validationStart, 'validation-start', 0) ?? (validSrc ? 0 : set.count === 60000 ? 55000 : set.count - Math.floor(set.count / 10));
  if (vStart > vset.count) throw new FfmergeError('INVALID_ARGUMENT', `--validation-start ${vStart} is past the ${vset.count} validation images`);
  // validation asked for (a set of its own, or a start) and none left: refused, not run without a word
  if (vStart === vset.count && (validSrc || o.validationStart !== undefined)) {
    throw new FfmergeError('INVALID_ARGUMENT', `--validation-start ${vStart} leaves no validation images (${validSrc ? 'the validation set holds' : 'the images are'} ${vset.count}): start validation earlier${validSrc ? '' : ', or leave out --validation-start'}`);
  }
  // A size asked for is trained or validated on in full, or refused: never cut to what is there without a word.
  const vLeft = vset.count - vStart;
  const vAsked = int(o.validationSize, 'validation-size');
  if (vAsked !== undefined && vAsked > vLeft) {
    throw new FfmergeError('INVALID_ARGUMENT', `--validation-size ${vAsked} is more than the ${vLeft} ${validSrc ? 'validation images' : 'images'} from --validation-start ${vStart}: ask for at most ${vLeft}${vStart > 0 ? ', or start validation earlier' : ''}`);
  }
  const vCount = vAsked ?? vLeft;
  // training never reaches into the validation range of its own set
  const trainEnd = validSrc ? set.count : vStart;
  const tAsked = int(o.trainSize, 'train-size');
  if (tAsked !== undefined && tAsked > trainEnd) {
    const where = validSrc ? `the ${trainEnd} training images` : `the ${trainEnd} images before the validation range (validation starts at image ${vStart}: --validation-start, or a separate --valid-images/--valid set)`;
    throw new FfmergeError('INVALID_ARGUMENT', `--train-size ${tAsked} is more than ${where}`);
  }
  const tCount = tAsked ?? trainEnd;
  // A validation set that is the training file again (another path, a link or a byte-identical copy) would score
  // images the model was just trained on: refused as compress refuses validation inside its calibration images.
  const same = validSrc && vCount > 0 && vStart < tCount ? await sameSource(src, validSrc) : undefined;
  if (same) {
    const folder = 'folder' in src;
    throw new FfmergeError(
      'INVALID_ARGUMENT',
      `validation would start at image ${vStart}, inside the training images 0-${tCount - 1} of the same ${folder ? 'folder' : same !== 'file' ? `data (the validation file is ${copyWords(same)} of the training file)` : 'file'}: ` +
        // (only where images are left after them: a whole file trained on leaves none to validate)
        (tCount < vset.count ? `start validation after them (--validation-start ${tCount}), ` : '') +
        (vStart > 0 ? `train on the images before it (--train-size ${vStart}), ` : '') +
        `leave out ${folder ? '--valid' : '--valid-images/--valid-labels'} (validation then takes the images from --validation-start on, which never train), or give a separate validation set`,
    );
  }
  if (tCount === 0) throw new FfmergeError('INVALID_DATA', 'finetune: no training images before the validation range (see --validation-start)');
  return {
    train: take(set, 0, tCount),
    ...(vCount > 0 ? { validation: take(vset, vStart, vCount) } : {}),
    note: `train: images 0-${tCount - 1}; validation: ${vCount > 0 ? `images ${vStart}-${vStart + vCount - 1} of ${validSrc ? 'the validation set' : 'the training file'}` : 'none'}`,
  };
}
