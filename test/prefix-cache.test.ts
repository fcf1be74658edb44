/**
 * PrefixCache: states kept in RAM up to a budget and spilled to unlinked files beyond it give the same
 * forward results bit for bit, leave no file behind, and refuse use after dispose.
 */
import * as fs from 'node:fs';
import { loadModel } from '../lib/model/load';
import type { ForwardInput } from '../lib/model/model';
import type { Progress } from '../lib/native/job';
import { nllOf, PrefixCache } from '../lib/pipeline/prefix';
import { largeModelSearchTokens } from '../lib/pipeline/tasks/language-modeling';
import { removeSyntheticDirs, syntheticLlama, tempDir } from './helpers/synthetic-model';

afterAll(() => removeSyntheticDirs());

/** Open descriptors of this process that point at prefix spill files (unlinked, so "(deleted)"). */
function openSpills(): number {
  if (!fs.existsSync('/proc/self/fd')) return 0;
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).includes('ffmerge-prefix-');
    } catch {
      return false;
    }
  }).length;
}

function batch(seed: number, b: number, seq: number, vocab: number): ForwardInput {
  const ids = Int32Array.from({ length: b * seq }, (_, i) => (i * 7919 + seed * 104729) % vocab);
  return { ids, batch: b, seq };
}

describe('PrefixCache', () => {
  test('spilled layers give the same results as layers in RAM, and leave no file behind', async () => {
    const s = await syntheticLlama({ layers: 4, d: 24, heads: 4, kvHeads: 2, ff: 37, vocab: 40, seed: 9 });
    const m = await loadModel(s.dir);
    const batches = [batch(1, 2, 11, 40), batch(2, 3, 11, 40), batch(3, 1, 7, 40)];
    const spillDir = tempDir('prefix-spill');
    const ram = await PrefixCache.build(m, batches, [0, 1, 2, 3]);
    // budget of one layer: layer 0 in RAM, 1..3 spilled
    const layerBytes = batches.reduce((n, b) => n + b.batch * b.seq * 24 * 4, 0);
    const disk = await PrefixCache.build(m, batches, [0, 1, 2, 3], { memoryBytes: layerBytes, spillDir });
    expect(ram.spilled()).toEqual([]);
    expect(disk.spilled()).toEqual([1, 2, 3]);
    expect(fs.readdirSync(spillDir)).toEqual([]); // unlinked while open
    expect(openSpills()).toBe(3);
    for (const from of [0, 1, 2, 3]) {
      const a = await nllOf(m, batches, { cache: ram, fromLayer: from });
      const b = await nllOf(m, batches, { cache: disk, fromLayer: from });
      expect(b).toEqual(a);
      for (let i = 0; i < batches.length; i++) {
        const x = await ram.forward(m, from, i, { output: 'logits' });
        const y = await disk.forward(m, from, i, { output: 'logits' });
        expect(Buffer.from(y.logits.buffer).equals(Buffer.from(x.logits.buffer))).toBe(true);
      }
    }
    // the states carried between layers while building, through disk as well: the same states, none left open
    const carried = await PrefixCache.build(m, batches, [0, 1, 2, 3], { memoryBytes: layerBytes, stateMemoryBytes: 0, spillDir });
    expect(openSpills()).toBe(6); // disk's three and carried's three kept layers; the carry files are closed
    for (const from of [0, 1, 2, 3]) expect(await nllOf(m, batches, { cache: carried, fromLayer: from })).toEqual(await nllOf(m, batches, { cache: ram, fromLayer: from }));
    await carried.dispose();
    // and both equal the uncached model
    const seen: Progress[] = [];
    const plain = await nllOf(m, batches, { onProgress: (p) => seen.push(p) });
    // the phase starts when the work does, and each batch's layers show while it runs (tester DS: one batch of a
    // large model was minutes with no report, shown as the phase before)
    expect(seen[0]).toEqual({ phase: 'evaluate', done: 0, total: 3 });
    expect(seen).toContainEqual({ phase: 'evaluate', done: 1, total: 3, detail: '100% of batch 2', within: 1 });
    expect(seen.at(-1)).toEqual({ phase: 'evaluate', done: 3, total: 3 });
    const cached = await nllOf(m, batches, { cache: disk, fromLayer: 2 });
    expect(cached.count).toBe(plain.count);
    expect(Math.abs(cached.sum - plain.sum) / plain.sum).toBeLessThan(1e-6);
    await disk.dispose();
    expect(openSpills()).toBe(0);
    await disk.dispose(); // twice is fine
    await expect(disk.forward(m, 1, 0, { output: 'nll' })).rejects.toThrow(/after dispose/);
    await ram.dispose();
    m.dispose();
  });

  test('an abort while building closes the spill files', async () => {
    const s = await syntheticLlama({ layers: 4, d: 24, heads: 4, kvHeads: 2, ff: 37, vocab: 40, seed: 10 });
    const m = await loadModel(s.dir);
    const ac = new AbortController();
    const batches = [batch(1, 2, 11, 40), batch(2, 2, 11, 40)];
    let n = 0;
    const p = PrefixCache.build(m, batches, [0, 1, 2, 3], {
      memoryBytes: 0,
      signal: ac.signal,
      onProgress: () => {
        if (++n === 2) ac.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(openSpills()).toBe(0);
    m.dispose();
  });
});

describe('search tokens of a large model', () => {
  test('about four validation passes over all candidates', () => {
    // a 7B: 32 layers, 31 windows of 2 starting at 0..30 → Σ(32 − s)/32 = 527/32 passes per token
    const starts = Array.from({ length: 31 }, (_, s) => s);
    const n = largeModelSearchTokens(32, 10240, starts);
    expect(n).toBe(Math.floor((10240 * 4 * 32) / 527));
    // few candidates: all validation tokens
    expect(largeModelSearchTokens(32, 10240, [30, 31])).toBe(10240);
  });
});
