/**
 * The ties a trained model keeps, against the checkpoint it is trained from or written over. Training keeps
 * exactly the ties the model holds in native memory (layers that use one FF train as one parameter), so a
 * merge the checkpoint records must be one shared FF in the model, and a shared FF in the model must be a merge
 * the checkpoint records: otherwise the output's record and its weights would disagree.
 */
import { FfmergeError } from '../errors';
import type { Model } from '../model/model';

/**
 * An expanded output stores each merged position's FF as its own copy: trained, the copies would drift apart
 * and the merge's saving could not be had back (convert --format tied refuses copies that differ). `subject`
 * names the model ("<dir> is" for a folder); `dir` goes into the convert command shown.
 */
export function expandedError(subject: string, dir?: string): FfmergeError {
  return new FfmergeError(
    'INVALID_ARGUMENT',
    `${subject} an expanded ffmerge output: its merged FFs are separate copies that would train apart. Fine-tune the tied form instead (ffmerge convert ${dir ?? '<model folder>'} --format tied --out <dir>), then convert the result back if you need it expanded`,
  );
}

/** Whether the given layers of the model's main stack all use one FF in native memory. */
export function sharesOneFF(model: Model, layers: readonly number[]): boolean {
  return layers.every((l) => model.sharesFF(layers[0]!, model, l));
}

/** The groups of two or more main-stack layers that use one FF in native memory (a merged window loaded tied). */
export function sharedFFGroups(model: Model): number[][] {
  // using one FF is an equivalence (one native FF, or one stored layer streamed): each layer joins the group of
  // the first earlier layer it shares with
  const groups: number[][] = [];
  for (let l = 0; l < model.layers(); l++) {
    const g = groups.find((x) => model.sharesFF(x[0]!, model, l));
    if (g) g.push(l);
    else groups.push([l]);
  }
  return groups.filter((g) => g.length > 1);
}
