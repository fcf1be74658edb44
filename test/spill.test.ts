/**
 * The per-batch stores past a memory budget (lib/pipeline/spill.ts): on disk they give back what was put, and a
 * temp folder that cannot take the file is IO_ERROR naming it and TMPDIR, not an errno as INTERNAL_ERROR.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openBatchStore, openStatesStore } from '../lib/pipeline/spill';

describe('batch stores', () => {
  test('on disk: each batch back as it was put, in any order; in RAM within the budget, on disk past it', async () => {
    const store = await openBatchStore('disk', 'test');
    const xs = [Float32Array.from([1, -2.5, 3]), new Float32Array(0), Float32Array.from({ length: 1000 }, (_, i) => i / 7)];
    for (const x of xs) await store.put(x);
    for (const i of [2, 0, 1]) expect(Array.from(await store.get(i))).toEqual(Array.from(xs[i]!));
    await store.close();
    await expect(store.get(0)).rejects.toThrow('read after close');
    expect((await openStatesStore('t', 100, 100)).kind).toBe('ram');
    const disk = await openStatesStore('t', 101, 100);
    expect(disk.kind).toBe('disk');
    await disk.close();
  });

  test('a temp folder that cannot take the file is IO_ERROR naming it and TMPDIR (tester FA: ENOSPC as INTERNAL_ERROR)', async () => {
    const gone = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-spill-')), 'gone');
    const e = await openBatchStore('disk', 'test', gone).catch((x: unknown) => x as { code: string; message: string });
    expect(e).toMatchObject({ code: 'IO_ERROR' });
    expect((e as { message: string }).message).toContain(`an unlinked temporary file in ${gone}, which could not be written`);
    expect((e as { message: string }).message).toContain('point TMPDIR at a folder with room');
    fs.rmSync(path.dirname(gone), { recursive: true, force: true });
  });
});
