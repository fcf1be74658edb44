/** What compress() returns (and writes as report.json beside the checkpoint): one shape for every task. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_JSON_FILE_BYTES } from '../files';
import type { StackName } from '../model/model';
import type { Anchor } from '../merge/windows';
import type { RecordedWindow } from '../checkpoint/earlier-merges';
import type { CompressFormat, StackMode } from './options';
import type { DataCounts, MetricInfo, SelectionInfo } from './task';

export interface Metric {
  validation: number;
  test?: number;
}

/** One scored search candidate: its window per merged stack ("a-b") and the metric (or `selection` score) on the search split. */
export interface CandidateScore {
  windows: Partial<Record<StackName, string>>;
  /** First layer the candidate changes. */
  start: number;
  /** "method+recover" when the search compared combinations (compress with no method named). */
  method?: string;
  score: number;
}

export interface BaselineResult extends Metric {
  /** The placement chosen by validation, per stack. */
  windows: Partial<Record<StackName, string>>;
  /** Parameters this baseline removes (whole layers cannot always match the merge exactly). */
  paramsRemoved: number;
  /** Every placement scored (empty when there was only one: built, not scored). */
  candidates: CandidateScore[];
}

export interface CompressResult {
  model: string;
  modelType: string;
  task: string;
  metric: MetricInfo;
  /** Present when candidates (and their `score`s) were ranked by this instead of the metric. */
  selection?: SelectionInfo;
  layers: Partial<Record<StackName, number>>;
  k: number;
  method: string;
  /** Which layer of a window the others were aligned to; absent when no chosen window was aligned (vanilla, select). */
  anchor?: Anchor;
  recover: string;
  stacks: StackMode;
  /**
   * adjusted: layers outside the window whose FF the recover method rewrote (refit-res: after it; finetune: every
   * other layer). trained: its recover method trained it (RecoverMethod.trains).
   */
  windows: { stack: StackName; window: string; layers: number[]; anchor?: number; method: string; recover: string; trained?: boolean; adjusted?: number[] }[];
  /**
   * Present when the source was itself an ffmerge output: the merges it already carried (its config.json's
   * `ffmerge.windows`), kept in the output, whose record lists them before `windows`. `removed` counts this
   * run's merge only; `before` is the source in the tied form (an expanded source's earlier copies not counted).
   */
  earlierWindows?: RecordedWindow[];
  /** The caller's own plug-ins (compress's `plugins`) this result names: not part of ffmerge, as the card says. */
  plugins?: string[];
  /** Every merge candidate scored by the search (empty when the windows were given, or only one was possible). */
  candidates: CandidateScore[];
  /** Whether the windows were given (`window`); false when compress chose them, by search or as the only one possible. */
  windowsGiven: boolean;
  base: Metric;
  merged: Metric;
  baselines: Record<string, BaselineResult>;
  /** In the tied form: what `after` stores (the expanded format stores each shared tensor k times). */
  params: { before: number; after: number; removed: number; fraction: number };
  bytes: { before: number; after: number; removed: number; fraction: number };
  /**
   * calibrationRead: whether the run read its calibration data (false only where every combination tried was a
   * vanilla merge with recover none); absent in an older report.json, read as true.
   */
  data: DataCounts & { calibrationFeatures: Partial<Record<StackName, number>>; calibrationRead?: boolean };
  /** Seconds per phase that ran. report.json's save is the time up to its own writing (weights written). */
  timings: Record<string, number>;
  out?: { dir: string; format: CompressFormat; bytes: number };
}

/** Whether the run read its calibration data (CompressResult.data.calibrationRead). */
export function calibrationUsed(r: Pick<CompressResult, 'data'>): boolean {
  return r.data.calibrationRead !== false;
}

/**
 * How the note naming a caller's plug-ins that no option picked begins: the report and the summary say it, the
 * card leaves it out (it names what did not run).
 */
export const UNPICKED_NOTE = 'plug-ins given but not picked by name';

/** Written beside report.json where a chosen window was aligned (compress's permutationsFile), and carried along. */
export const PERMUTATIONS_FILE = 'permutations.json';

/**
 * The windows of a folder's permutations.json, where it holds one of ffmerge's (a regular file, JSON with `about`
 * and a `windows` list); undefined for none, or for a file of that name that is something else.
 */
export function readPermutations(dir: string): unknown[] | undefined {
  const file = path.join(dir, PERMUTATIONS_FILE);
  try {
    const st = fs.statSync(file);
    if (!st.isFile() || st.size > MAX_JSON_FILE_BYTES) return undefined;
    const o = JSON.parse(fs.readFileSync(file, 'utf8')) as { about?: unknown; windows?: unknown };
    if (typeof o !== 'object' || o === null || typeof o.about !== 'string' || !Array.isArray(o.windows)) return undefined;
    // written again with this run's windows: one nested too deep to write (tester GD: 100k levels) failed the
    // save as INTERNAL_ERROR after all the work; it is read as no file, as a damaged one is
    JSON.stringify(o.windows);
    return o.windows;
  } catch {
    return undefined;
  }
}
