/**
 * Per-batch Float32Array states kept for later, in RAM or spilled to an unlinked temporary file.
 *
 * The prefix cache (hidden states entering a layer) and the layer-major feature pass (an anchor layer's FF
 * pre-activations, until its last pair closes) both hold one array per calibration batch; their size grows with
 * the data, not the model. Stores past a caller's RAM budget go to disk: the file is unlinked as soon as it is
 * opened, so the kernel frees it when the handle closes or the process dies and nothing is left behind. Read
 * back one batch at a time, the data comes from the page cache in practice.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FfmergeError } from '../errors';

export interface BatchStore {
  readonly kind: 'ram' | 'disk';
  /** Appends one batch's array (in RAM: kept as is, not copied). */
  put(x: Float32Array): Promise<void>;
  /** Batch i's array (from disk: a fresh copy). */
  get(i: number): Promise<Float32Array>;
  /** Frees the arrays or the file. Safe to call twice. */
  close(): Promise<void>;
}

class RamStore implements BatchStore {
  readonly kind = 'ram';
  private states: Float32Array[] = [];

  async put(x: Float32Array): Promise<void> {
    this.states.push(x);
  }

  async get(i: number): Promise<Float32Array> {
    const x = this.states[i];
    if (!x) throw new Error(`batch ${i} was not stored`);
    return x;
  }

  async close(): Promise<void> {
    this.states = [];
  }
}

/**
 * A spill file that cannot be made or written (the temp folder full, read-only, gone): IO_ERROR naming the
 * folder and what to do, not an errno as INTERNAL_ERROR. The file is unlinked, so `du` never shows it.
 */
function spillError(dir: string, e: unknown): FfmergeError {
  const code = (e as NodeJS.ErrnoException).code;
  const full = code === 'ENOSPC' || code === 'EDQUOT';
  return new FfmergeError(
    'IO_ERROR',
    `the states this run keeps past its memory budgets go to an unlinked temporary file in ${dir}, which ${full ? 'is full' : `could not be written (${(e as Error).message})`}: point TMPDIR at a folder with room (about the calibration's tokens × d_model × 4 bytes a copy), or give fewer calibration tokens`,
    { cause: e },
  );
}

class DiskStore implements BatchStore {
  readonly kind = 'disk';
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];
  private end = 0;
  private closed = false;

  constructor(
    private readonly file: fs.promises.FileHandle,
    private readonly label: string,
    private readonly dir: string,
  ) {}

  async put(x: Float32Array): Promise<void> {
    const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    let written = 0;
    try {
      while (written < bytes.length) {
        const { bytesWritten } = await this.file.write(bytes, written, bytes.length - written, this.end + written);
        written += bytesWritten;
      }
    } catch (e) {
      throw spillError(this.dir, e);
    }
    this.offsets.push(this.end);
    this.lengths.push(x.length);
    this.end += bytes.length;
  }

  async get(i: number): Promise<Float32Array> {
    if (this.closed) throw new Error(`${this.label} read after close`);
    const len = this.lengths[i];
    if (len === undefined) throw new Error(`batch ${i} was not stored in ${this.label}`);
    const out = new Float32Array(len);
    const bytes = new Uint8Array(out.buffer);
    let read = 0;
    while (read < bytes.length) {
      const { bytesRead } = await this.file.read(bytes, read, bytes.length - read, this.offsets[i]! + read);
      if (bytesRead === 0) throw new Error(`${this.label} ended early`);
      read += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close().catch(() => undefined);
  }
}

/**
 * RAM for one copy of the states a training-free fit keeps per calibration batch (tokens × d × 4 bytes): the
 * shared entry states (ff-inputs EntryStates) and each of refit-res's streams (up to five live at once). Past
 * it a copy goes to disk: they grow with the calibration size.
 */
export const FIT_STATE_MEMORY_BYTES = 2 ** 27;

/** A store for `bytes` of states: in RAM within FIT_STATE_MEMORY_BYTES (or `budget`), else on disk. */
export function openStatesStore(label: string, bytes: number, budget = FIT_STATE_MEMORY_BYTES): Promise<BatchStore> {
  return openBatchStore(bytes <= budget ? 'ram' : 'disk', label);
}

/** A store in RAM, or on disk in `dir` (default os.tmpdir()); `label` names it in file names and errors. */
export async function openBatchStore(where: 'ram' | 'disk', label: string, dir: string = os.tmpdir()): Promise<BatchStore> {
  if (where === 'ram') return new RamStore();
  const name = path.join(dir, `ffmerge-${label}-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const file = await fs.promises.open(name, 'wx+', 0o600).catch((e: unknown) => {
    throw spillError(dir, e);
  });
  try {
    // unlinked at once: the data lives as long as the handle, and a crash leaves no file behind
    await fs.promises.unlink(name);
  } catch (e) {
    await file.close().catch(() => undefined);
    throw e;
  }
  return new DiskStore(file, `${label} spill file`, dir);
}
