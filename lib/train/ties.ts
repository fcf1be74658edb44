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
  const n = model.layers();
  const grouped = new Set<number>();
  const out: number[][] = [];
  for (let a = 0; a < n; a++) {
    if (grouped.has(a)) continue;
    const g = [a];
    for (let b = a + 1; b < n; b++) {
      if (!grouped.has(b) && model.sharesFF(a, model, b)) {
        g.push(b);
        grouped.add(b);
      }
    }
    if (g.length > 1) out.push(g);
  }
  return out;
}
