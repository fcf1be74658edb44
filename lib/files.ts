/**
 * Opening input files that must be regular files. A FIFO named model.safetensors, config.json or --data
 * would block open(2) or read(2) forever (no writer ever comes), and a directory or device is no better:
 * files are opened with O_NONBLOCK (a FIFO opens at once, a regular file ignores the flag) and checked with
 * fstat on the open descriptor, so nothing can be swapped in between the check and the read.
 *
 * Errors: a missing or unreadable file keeps its Node errno error (callers map ENOENT their own way); a path
 * that is not a regular file is an FfmergeError with the caller's code.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FfmergeError, type ErrorCode } from './errors';

const FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** Throws `code` unless `st` is a regular file, and `tooLarge` when it is one of more than `maxBytes`. */
function checkRegular(file: string, st: fs.Stats, code: ErrorCode, maxBytes: number, tooLarge: ErrorCode): void {
  if (!st.isFile()) {
    const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a regular file';
    throw new FfmergeError(code, `${file} is ${kind}; ffmerge reads only regular files here`);
  }
  if (st.size > maxBytes) throw new FfmergeError(tooLarge, `${file} is ${st.size} bytes, over the ${maxBytes}-byte limit`);
}

/** An open handle on a regular file of at most `maxBytes` (caller closes it). */
export async function openRegularFile(file: string, code: ErrorCode, maxBytes = Infinity, tooLarge: ErrorCode = code): Promise<fs.promises.FileHandle> {
  const fh = await fs.promises.open(file, FLAGS);
  try {
    checkRegular(file, await fh.stat(), code, maxBytes, tooLarge);
    return fh;
  } catch (e) {
    await fh.close().catch(() => {});
    throw e;
  }
}

/**
 * Throws unless `file` is a regular file, by opening it as above (for paths handed on to streams or threads),
 * of at most `maxBytes` (what readRegularFileSync would refuse, refused the same way).
 */
export async function assertRegularFile(file: string, code: ErrorCode, maxBytes = Infinity): Promise<void> {
  await (await openRegularFile(file, code, maxBytes)).close();
}

/** The whole contents of a regular file as UTF-8, refusing files over `maxBytes`. */
export function readRegularFileSync(file: string, code: ErrorCode, maxBytes = Infinity): string {
  const fd = fs.openSync(file, FLAGS);
  try {
    checkRegular(file, fs.fstatSync(fd), code, maxBytes, code);
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** The bytes of a regular file (async; a FIFO or device is refused with `code`, as openRegularFile does). */
export async function readRegularBytes(file: string, code: ErrorCode, maxBytes = Infinity, tooLarge: ErrorCode = code): Promise<Buffer> {
  const fh = await openRegularFile(file, code, maxBytes, tooLarge);
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Async readRegularFileSync, with its own code for a file over `maxBytes`. */
export async function readRegularFile(file: string, code: ErrorCode, maxBytes = Infinity, tooLarge: ErrorCode = code): Promise<string> {
  return (await readRegularBytes(file, code, maxBytes, tooLarge)).toString('utf8');
}

/** Largest JSON side file (config.json, tokenizer.json, shard index) read whole. */
export const MAX_JSON_FILE_BYTES = 100_000_000;

/**
 * Whether a process id is running (EPERM: it is, another user's). A temp file or folder named with a dead
 * run's pid is that run's leftover (SIGKILL, power loss), which the next writer of the same output removes.
 */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the run that named a temp `…ffmerge-tmp-<pid>-<ms>…` is gone: its pid runs no process, or the pid is
 * this process's own and the name is older than this process. A server restarted in a container gets the
 * killed one's pid back (often 1), so its leftovers, each a whole checkpoint, looked live for good (tester GC).
 * This process names its temps after it began (performance.timeOrigin is the process's start, in workers
 * too); only a wall clock set back since then could make one of its own look older.
 */
function runGone(name: string, pid: number): boolean {
  if (pid !== process.pid) return !processAlive(pid);
  const ms = /ffmerge-tmp-\d+-(\d+)/.exec(name);
  return ms !== null && Number(ms[1]) < Math.floor(performance.timeOrigin);
}

/** The names in `dir` that `re` matches whose first group is the pid of a run that is gone: its temp names. */
export function deadRunTemps(dir: string, re: RegExp): RegExpExecArray[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.map((name) => re.exec(name)).filter((m): m is RegExpExecArray => m !== null && runGone(m[0], Number(m[1])));
}

/**
 * Why a path that fs.existsSync calls missing is missing: a symbolic link that loops, or one that points
 * nowhere, exists as a name, and "does not exist" sent users looking for a file that is there.
 */
export function whyMissing(file: string): string {
  try {
    fs.statSync(file);
    return 'cannot be read';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return 'is a symbolic link that loops';
    if (code === 'ENOTDIR') return 'is not reachable: part of its path is a file, not a folder';
    if (code === 'EACCES') return 'cannot be read (permission denied)';
    try {
      if (fs.lstatSync(file).isSymbolicLink()) return 'is a symbolic link that points nowhere';
    } catch {
      // no such name at all
    }
    return 'does not exist';
  }
}

/**
 * A folder the user named (a model's), checked before anything is read from it: DATA_NOT_FOUND saying why it
 * cannot be reached (missing, a looping link, a file in its path) or that it is a file.
 */
export function checkFolder(dir: string, what: string, holds: string, hint = ''): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new FfmergeError('DATA_NOT_FOUND', `${what} ${dir} ${whyMissing(dir)}${hint}`);
  }
  if (!st.isDirectory()) throw new FfmergeError('DATA_NOT_FOUND', `${dir} is a file, not a ${what} (give the folder that holds ${holds})`);
}

/**
 * The name a user knows the source by. A folder in Hugging Face's cache (…/models--org--name/snapshots/<commit>)
 * is org/name: its own name is a commit hash.
 */
export function modelName(dir: string): string {
  const parts = path.resolve(dir).split(path.sep);
  const [repo, snapshots, last] = parts.slice(-3);
  return snapshots === 'snapshots' && repo?.startsWith('models--') && repo.length > 8 ? repo.slice(8).split('--').join('/') : (last ?? dir);
}
