/** Recover methods by name (`--recover`). A new one is a file beside these and one line here; a caller's own come per call (compress's `plugins`). */
import { Registry } from '../registry';
import type { RecoverMethod } from '../plugins';
import { none } from './none';
import { refit } from './refit';
import { refitRes } from './refit-res';
import { refitSeq } from './refit-seq';
import { finetuneRecover } from './finetune';

export const RECOVER_METHODS = new Registry<RecoverMethod>({ what: 'recover method', option: 'recover', entry: 'recover' }, [none, refit, refitSeq, refitRes, finetuneRecover]);
