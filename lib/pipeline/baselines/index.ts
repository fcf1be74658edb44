/** Baselines by name (`--baselines`). A new one is a file beside these and one line here; a caller's own come per call (compress's `plugins`). */
import { Registry } from '../registry';
import type { Baseline } from '../plugins';
import { dropFF } from './drop-ff';
import { dropLayers } from './drop-layers';
import { paper } from './paper';

export const BASELINES = new Registry<Baseline>({ what: 'baseline', option: 'baselines', entry: 'candidates' }, [dropFF, dropLayers, paper]);
