/** Baselines by name (`--baselines`). A new one is a file beside these and one line here. */
import { Registry } from '../registry';
import type { Baseline } from '../plugins';
import { dropFF } from './drop-ff';
import { dropLayers } from './drop-layers';
import { paper } from './paper';

export const BASELINES = new Registry<Baseline>('baseline', 'baselines').register(dropFF).register(dropLayers).register(paper);
