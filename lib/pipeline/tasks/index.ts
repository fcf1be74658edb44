/** Tasks by name; compress() picks the one that accepts the model. A new task is a file and one line here. */
import { FfmergeError } from '../../errors';
import type { ModelSummary } from '../../model/inspect';
import { Registry } from '../registry';
import type { TaskKind } from '../task';
import { imageClassification } from './image-classification';
import { languageModeling } from './language-modeling';
import { translation } from './translation';

export const TASKS = new Registry<TaskKind>({ what: 'task', option: 'task', entry: 'create' }, [languageModeling, imageClassification, translation]);

export function taskFor(summary: ModelSummary): TaskKind {
  const t = TASKS.all().find((k) => k.accepts(summary));
  if (!t) {
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      `compress has no task for ${summary.modelType} models (it compresses decoder-only language models, ViT image classifiers and encoder–decoder translation models)`,
    );
  }
  return t;
}
