/** Tasks by name; compress picks the one that accepts the model. A new task is a file and one line here. */
import { FfmergeError } from '../../errors';
import type { ModelSummary } from '../../model/inspect';
import { COMMON_KEYS, type Plugins } from '../options';
import { guardTask } from '../plugin-guard';
import { Registry } from '../registry';
import type { TaskKind } from '../task';
import { imageClassification } from './image-classification';
import { languageModeling } from './language-modeling';
import { translation } from './translation';

export const TASKS = new Registry<TaskKind>({ what: 'task', option: 'task', entry: 'create' }, [languageModeling, imageClassification, translation]);

/** Whether a task is a caller's own (a plug-in of the call), not one of ffmerge's. */
export const isOwnTask = (t: Pick<TaskKind, 'name'>): boolean => !TASKS.names().includes(t.name);

/** A call's tasks: the caller's own first (guarded: plugin-guard.ts), then ffmerge's. */
export function callTasks(plugins: Plugins | undefined, signal?: AbortSignal): TaskKind[] {
  const all = TASKS.with(plugins?.tasks).all();
  const dataKeys = new Set(TASKS.all().flatMap((t) => t.optionKeys as readonly string[]));
  for (const k of COMMON_KEYS) dataKeys.delete(k);
  const own = all.filter(isOwnTask).map((t) => guardTask(t, true, signal, dataKeys));
  return [...own, ...all.filter((t) => !isOwnTask(t))];
}

/** The first task that accepts the model: a caller's own (Plugins.tasks) before ffmerge's. */
export function taskFor(summary: ModelSummary, tasks: readonly TaskKind[] = TASKS.all()): TaskKind {
  const t = tasks.find((k) => k.accepts(summary));
  if (!t) {
    const own = tasks.filter(isOwnTask).map((k) => k.name);
    throw new FfmergeError(
      'UNSUPPORTED_ARCHITECTURE',
      `compress has no task for ${summary.modelType} models (it compresses decoder-only language models, ViT image classifiers and encoder–decoder translation models${own.length ? `; the tasks given, ${own.join(', ')}, do not accept it either` : ''})`,
    );
  }
  return t;
}
