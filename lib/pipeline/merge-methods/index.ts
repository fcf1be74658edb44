/** Merge methods by name (`--method`). A new one is a file beside these and one line here; a caller's own come per call (compress's `plugins`). */
import { Registry } from '../registry';
import type { MergeMethod } from '../plugins';
import { permute } from './permute';
import { select } from './select';
import { vanilla } from './vanilla';

export const MERGE_METHODS = new Registry<MergeMethod>({ what: 'merge method', option: 'method', entry: 'merge', reserved: ['auto'] }, [permute, vanilla, select]);
