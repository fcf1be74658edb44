/**
 * Where a safetensors file's bytes come from: an open file handle (kept open for the reader's life, one
 * positioned read per request) or bytes already in memory.
 */
import { openRegularFile } from '../files';
import * as fs from 'node:fs';
import { FfmergeError } from '../errors';

export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Fills `into` completely with the bytes starting at `position`. */
  readExact(into: Uint8Array, position: number): Promise<void>;
  close(): Promise<void>;
}

/** Node caps one read at 2^31-1 bytes; large tensors are read in chunks below that. */
const MAX_CHUNK = 1 << 30;

export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private fh: fs.promises.FileHandle | null,
  ) {}

  static async open(file: string): Promise<FileSource> {
    let fh: fs.promises.FileHandle;
    try {
      // O_NONBLOCK + fstat (lib/files.ts): a FIFO in place of a checkpoint must fail, not block forever
      fh = await openRegularFile(file, 'IO_ERROR');
    } catch (e) {
      if (e instanceof FfmergeError) throw e;
      throw new FfmergeError('IO_ERROR', `cannot open ${file}: ${(e as Error).message}`, { cause: e });
    }
    try {
      return new FileSource(file, (await fh.stat()).size, fh);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  async readExact(into: Uint8Array, position: number): Promise<void> {
    if (!this.fh) throw new FfmergeError('INVALID_ARGUMENT', `${this.name} was already closed`);
    let done = 0;
    while (done < into.byteLength) {
      const len = Math.min(MAX_CHUNK, into.byteLength - done);
      let bytesRead: number;
      try {
        ({ bytesRead } = await this.fh.read(into, done, len, position + done));
      } catch (e) {
        throw new FfmergeError('IO_ERROR', `reading ${this.name} failed: ${(e as Error).message}`, { cause: e });
      }
      if (bytesRead === 0) {
        throw new FfmergeError('SAFETENSORS_TRUNCATED', `${this.name} ended early (was it changed while open?)`);
      }
      done += bytesRead;
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}

export class MemorySource implements ByteSource {
  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
  ) {}

  get size(): number {
    return this.bytes.byteLength;
  }

  async readExact(into: Uint8Array, position: number): Promise<void> {
    if (position + into.byteLength > this.bytes.byteLength) {
      throw new FfmergeError('SAFETENSORS_TRUNCATED', `${this.name} ended early`);
    }
    into.set(this.bytes.subarray(position, position + into.byteLength));
  }

  async close(): Promise<void> {}
}
