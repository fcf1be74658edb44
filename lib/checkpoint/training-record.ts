/**
 * The fine-tuning runs an `ffmerge` record holds, oldest first. A folder `ffmerge finetune` wrote has its last
 * run as `finetune` and those before as `earlierFinetunes`; a folder compressed from a fine-tuned one carries
 * them as `sourceFinetune` and `sourceEarlierFinetunes` (its own weights were merged after them). Fine-tuning
 * or compressing again must keep every run, whichever keys they came under.
 *
 * Each run also records the merges its weights already had (`mergedBefore`: "decoder 0-1", …, oldest first,
 * as `windows` lists them), so that merges and fine-tunes read in the order they were done. A run written
 * before ffmerge recorded it says nothing.
 */
import { isObject } from '../arguments';

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export const TRAINING_KEYS = ['sourceEarlierFinetunes', 'sourceFinetune', 'earlierFinetunes', 'finetune'] as const;

export function trainingRuns(record: unknown): unknown[] {
  if (!isObject(record)) return [];
  const one = (k: string) => (Object.hasOwn(record, k) ? [record[k]] : []);
  return [...list(record.sourceEarlierFinetunes), ...one('sourceFinetune'), ...list(record.earlierFinetunes), ...one('finetune')];
}

/** When a run trained, from its `mergedBefore`: undefined where the run does not say. */
export function whenTrained(run: unknown): string | undefined {
  if (!isObject(run) || !Array.isArray(run.mergedBefore)) return undefined;
  const merged = (run.mergedBefore as unknown[]).filter((w): w is string => typeof w === 'string');
  return merged.length ? `after the merge of ${merged.join(', ')}` : 'before any merge';
}
