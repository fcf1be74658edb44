/** No recovery: the merged FF as the merge method made it (the paper before fine-tuning). */
import type { RecoverMethod } from '../plugins';

export const none: RecoverMethod = {
  name: 'none',
  description: 'keep the merged FF as merged',
  readsCalibration: false,
  recover: async (_ctx, merged) => merged,
};
