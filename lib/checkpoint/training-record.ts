/**
 * The fine-tuning runs an `ffmerge` record holds, oldest first. A folder `ffmerge finetune` wrote has its last
 * run as `finetune` and those before as `earlierFinetunes`; a folder compressed from a fine-tuned one carries
 * them as `sourceFinetune` and `sourceEarlierFinetunes` (its own weights were merged after them). Fine-tuning
 * or compressing again must keep every run, whichever keys they came under.
 */
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export const TRAINING_KEYS = ['sourceEarlierFinetunes', 'sourceFinetune', 'earlierFinetunes', 'finetune'] as const;

export function trainingRuns(record: unknown): unknown[] {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return [];
  const r = record as Record<string, unknown>;
  const one = (k: string) => (Object.hasOwn(r, k) ? [r[k]] : []);
  return [...list(r.sourceEarlierFinetunes), ...one('sourceFinetune'), ...list(r.earlierFinetunes), ...one('finetune')];
}
