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
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export const TRAINING_KEYS = ['sourceEarlierFinetunes', 'sourceFinetune', 'earlierFinetunes', 'finetune'] as const;

export function trainingRuns(record: unknown): unknown[] {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return [];
  const r = record as Record<string, unknown>;
  const one = (k: string) => (Object.hasOwn(r, k) ? [r[k]] : []);
  return [...list(r.sourceEarlierFinetunes), ...one('sourceFinetune'), ...list(r.earlierFinetunes), ...one('finetune')];
}

/** When a run trained, from its `mergedBefore`: undefined where the run does not say. */
export function whenTrained(run: unknown): string | undefined {
  if (typeof run !== 'object' || run === null || !Array.isArray((run as Record<string, unknown>).mergedBefore)) return undefined;
  const merged = ((run as Record<string, unknown>).mergedBefore as unknown[]).filter((w): w is string => typeof w === 'string');
  return merged.length ? `after the merge of ${merged.join(', ')}` : 'before any merge';
}
