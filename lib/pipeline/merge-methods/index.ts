/** Merge methods by name (`--method`). A new one is a file beside these and one line here. */
import { Registry } from '../registry';
import type { MergeMethod } from '../plugins';
import { permute } from './permute';
import { select } from './select';
import { vanilla } from './vanilla';

export const MERGE_METHODS = new Registry<MergeMethod>('merge method', 'method').register(permute).register(vanilla).register(select);
