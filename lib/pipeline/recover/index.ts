/** Recover methods by name (`--recover`). A new one is a file beside these and one line here. */
import { Registry } from '../registry';
import type { RecoverMethod } from '../plugins';
import { none } from './none';
import { refit } from './refit';
import { refitRes } from './refit-res';
import { refitSeq } from './refit-seq';
import { finetuneRecover } from './finetune';

export const RECOVER_METHODS = new Registry<RecoverMethod>('recover method', 'recover').register(none).register(refit).register(refitSeq).register(refitRes).register(finetuneRecover);
