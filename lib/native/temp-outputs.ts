/**
 * A temporary output (a checkpoint's temp folder, a safetensors temp file) held by this environment's addon
 * instance while it is written: removed if the environment ends first (native/binding/temp_outputs.h says why).
 *   const release = holdTempOutput(tmp);
 *   try { …write, rename into place… } finally { release(); }
 * A write that fails or is aborted removes its own temp as before; this covers what JS cannot see:
 * worker.terminate() of a worker writing, and process.exit() while a write is under way.
 */
import { addonModule } from './loader';

interface TempOutputsAddon {
  holdTempOutput(path: string, restoreTo?: string): number;
  releaseTempOutput(id: number): void;
}

/**
 * Holds `path` (absolute) until the returned function is called; calling it again does nothing. Hold it before
 * it is made: a stop between the two would leave it. With `restoreTo`, `path` is an earlier output moved aside
 * for its replacement (overwrite): put back at `restoreTo` if that is empty when the environment ends, removed
 * only if the replacement is in place.
 */
export function holdTempOutput(path: string, restoreTo?: string): () => void {
  const addon = addonModule<TempOutputsAddon>();
  const id = restoreTo === undefined ? addon.holdTempOutput(path) : addon.holdTempOutput(path, restoreTo);
  return () => addon.releaseTempOutput(id);
}
