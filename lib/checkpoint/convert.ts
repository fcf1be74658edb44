/**
 * convertCheckpoint: an ffmerge output rewritten in the other format. `expanded` gives every tied layer its own
 * copy (any Hugging Face loader reads it as-is); `tied` stores each merged window's FF once again, after
 * checking that the copies are still identical (an expanded output fine-tuned without its ties is refused,
 * since tying would silently discard the changes). Written like every output: under a temporary name, renamed
 * into place.
 */
import * as path from 'node:path';
import { FfmergeError, showValue } from '../errors';
import { outputCard, readReport } from '../pipeline/model-card';
import { CheckpointReader, readTies, type TieMap } from './ties';
import { ffmergeRecord } from './record';
import { asRecorded, earlierWindows, recordedTies, type RecordedWindow } from './earlier-merges';
import { checkMaxShardSize, checkOutputDir, writeCheckpointOf, type ExtraFile, type OutputFormat, type WriteCheckpointResult } from './write';
import { sourceStamp } from './source-stamp';
import { checkJobOptions, withJobScope, type ProgressFn } from '../native/job';
import { checkPath } from '../arguments';
import { readConfig } from '../model/load';

export interface ConvertOptions {
  overwrite?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /** Progress of the write, phase 'save' in bytes (writeCheckpoint). */
  onProgress?: ProgressFn | undefined;
  /** Largest bytes per safetensors file (writeCheckpoint's maxShardSize: default 5 GB; above it, sharded). */
  maxShardSize?: number | undefined;
}

interface FfmergeInfo {
  format?: OutputFormat;
  windows?: RecordedWindow[];
  [key: string]: unknown;
}

/**
 * Rewrites a folder written by compress in the other format: 'expanded' (every layer its own tensors: any
 * Hugging Face loader reads it) or 'tied' (each shared tensor stored once), re-tied from its ffmerge record.
 */
export async function convertCheckpoint(dir: string, out: string, format: OutputFormat, opts: ConvertOptions = {}): Promise<WriteCheckpointResult> {
  checkPath(dir, 'convertCheckpoint(dir, out, format): dir');
  checkPath(out, 'convertCheckpoint(dir, out, format): out');
  checkJobOptions(opts, 'convertCheckpoint(dir, out, format, options): options', ['overwrite', 'maxShardSize']);
  checkMaxShardSize(opts.maxShardSize);
  if (format !== 'tied' && format !== 'expanded') throw new FfmergeError('INVALID_ARGUMENT', `format must be tied or expanded (got ${showValue(format)})`);
  // the source as it is before anything is read: one replaced while it is read or written is SOURCE_CHANGED
  let stamp = '';
  try {
    stamp = sourceStamp(dir);
  } catch {
    // readConfig says what is wrong with the folder
  }
  // the loader's reader: a FIFO in place of config.json is refused, not waited on forever; null is INVALID_CONFIG
  const config = await readConfig(dir);
  checkOutputDir(dir, out, opts.overwrite === true); // before the copies are read and compared
  // a record that is not an object (null, "yes") is refused as every command refuses it, not taken for none
  const info = ffmergeRecord(config, dir) as FfmergeInfo | undefined;
  const notOutput = () => new FfmergeError('INVALID_ARGUMENT', `${dir} is not an ffmerge output (config.json has no ffmerge.windows, and no merge is tied in its checkpoint); only compressed models can be converted`);
  if (info === undefined) {
    // a tied checkpoint whose config lost its record (replaced by the original model's, say): say so
    const tied = Object.keys(await readTies(dir)).length;
    if (tied > 0) {
      throw new FfmergeError('INVALID_CONFIG', `${dir}/config.json has no ffmerge record, yet its checkpoint ties ${tied} tensors to others: the config was replaced or edited; put back the config.json ffmerge wrote`);
    }
    throw notOutput();
  }
  // one job scope for the comparison and the write: an async onProgress that rejects stops either
  return withJobScope(opts, async (o, scope) => {
    let ties: TieMap = {};
    // every merge the source carries: those the record lists (a model compressed twice lists both) and those only
    // its tie map holds (an older tied output's); all go into the output's record, so the next convert keeps them
    let windows: RecordedWindow[];
    const src = await CheckpointReader.open(dir);
    try {
      windows = earlierWindows(config, src, dir);
      if (windows.length === 0) throw notOutput();
      // to tied: each copy checked against the one it joins. From a tied source to either format: a recorded
      // window its tie map does not hold (copies that differ) is refused, as export refuses it, rather than
      // copied into a record that claims a saving the output does not have. (An expanded source has no tie map
      // to disagree with, and to expanded its copies are not read.)
      if (format === 'tied' || Object.keys(src.ties).length > 0) {
        const needed = await recordedTies(config, windows, src, o);
        if (format === 'tied') ties = needed;
      }
    } finally {
      await src.close();
    }
    const { format: _old, ties: _ties, ...kept } = info;
    const rest = { ...kept, windows: asRecorded(windows) };
    const extraFiles: Record<string, ExtraFile> = {};
    const report = readReport(dir);
    if (report) {
      // where the model now is, in which format and how many bytes its weight files take (the params and bytes
      // of the compression count the tied form either way)
      const was = typeof report.out === 'object' && report.out !== null ? report.out : {};
      const where = { ...was, dir: path.resolve(out), format };
      report.out = where;
      extraFiles['report.json'] = ({ bytes }) => JSON.stringify({ ...report, out: { ...where, bytes } }, null, 2) + '\n';
    }
    // The card is rebuilt for the format written, report.json or not (a fine-tuned output has none): the source's
    // names the other format. Ties do not change what it says, so the record before the writer adds them will do.
    const card = outputCard({ ...config, ffmerge: { format, ...rest } }, format, out, report, dir);
    if (card !== undefined) extraFiles['README.md'] = card;
    return writeCheckpointOf({ source: dir, out, format, ties, info: rest, extraFiles, ...o }, stamp, scope);
  });
}
