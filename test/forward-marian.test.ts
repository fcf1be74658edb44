/**
 * Marian (encoder–decoder) forward against the fixture's Hugging Face reference: teacher-forced logits and
 * encoder/decoder FF pre-activations; greedy translations of the first 20 test sentences token for token;
 * greedy corpus BLEU on test_2016_flickr against eval.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../lib/model/load';
import * as modelModule from '../lib/model/model';
import { generateBytes, type Model } from '../lib/model/model';
import { SafetensorsReader } from '../lib/safetensors';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer';
import { readParallel } from '../lib/data/parallel';
import { evaluateTranslation, loadGenerationConfig, translate } from '../lib/eval/translate';
import { translationBatches } from '../lib/data/feature-batches';
import { FfmergeError, isFfmergeError } from '../lib/errors';
import { describeShared, sharedPath } from './helpers/shared';
import { maxRelErr } from './helpers/compare';


describeShared('fixtures/marian-multi30k-en-de', 'Marian (marian-multi30k-en-de)', () => {
  const dir = sharedPath('fixtures', 'marian-multi30k-en-de');
  let model: Model;
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    model = await loadModel(dir);
    tokenizer = await loadTokenizer(dir);
  });
  afterAll(() => model?.dispose());

  test("the two stacks' loads are one count that never goes back and ends at its total (tester FG: two load lines)", async () => {
    const seen: { done: number; total: number }[] = [];
    const m = await loadModel(dir, { onProgress: (p) => void (p.phase === 'load' && seen.push({ done: p.done, total: p.total })) });
    m.dispose();
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.done).toBeGreaterThanOrEqual(seen[i - 1]!.done);
    expect(seen.at(-1)!.done).toBe(seen.at(-1)!.total);
    expect(seen.filter((p) => p.done === p.total)).toHaveLength(1);
  });

  test('two stacks from config.json', () => {
    expect(model.stacks()).toEqual(['encoder', 'decoder']);
    expect(model.spec).toMatchObject({ family: 'marian', positions: 'sinusoidal', normPlacement: 'post', activation: 'silu', crossAttention: true });
    expect(model.encoderSpec).toMatchObject({ layers: 6, causal: false, head: 'none' });
    expect(model.spec.embedScale).toBeCloseTo(Math.sqrt(128), 6);
  });

  test('teacher-forced logits and encoder/decoder FF pre-activations equal reference.safetensors', async () => {
    const ref = await SafetensorsReader.open(path.join(dir, 'reference.safetensors'));
    const src = Int32Array.from(await ref.readF32('input_ids'));
    const mask = Uint8Array.from(await ref.readF32('attention_mask'));
    const labels = Int32Array.from(await ref.readF32('labels'));
    const refLogits = await ref.readF32('logits');
    const [B, T] = [2, 22];
    // decoder input = labels shifted right after decoder_start (2); -100 (ignored label) becomes pad (2)
    const dec = new Int32Array(B * T);
    const labelMask = new Uint8Array(B * T);
    for (let b = 0; b < B; b++) {
      dec[b * T] = 2;
      for (let t = 0; t < T; t++) {
        const v = labels[b * T + t]!;
        if (t + 1 < T) dec[b * T + t + 1] = v === -100 ? 2 : v;
        labelMask[b * T + t] = v === -100 ? 0 : 1;
      }
    }
    const r = await model.forward(
      { ids: dec, batch: B, seq: T, encoderIds: src, encoderSeq: T, encoderMask: mask },
      { output: 'logits', captureFF: true, captureEncoderFF: true },
    );
    expect(maxRelErr(r.logits, refLogits)).toBeLessThan(1e-4);
    const per = B * T * 512;
    const decPre = await ref.readF32('dec_fc1_preact');
    const encPre = await ref.readF32('enc_fc1_preact');
    await ref.close();
    const realRows = (full: Float32Array, m: Uint8Array) => {
      const rows: Float32Array[] = [];
      for (let i = 0; i < m.length; i++) if (m[i]) rows.push(full.subarray(i * 512, (i + 1) * 512));
      const out = new Float32Array(rows.length * 512);
      rows.forEach((row, j) => out.set(row, j * 512));
      return out;
    };
    for (let l = 0; l < 6; l++) {
      // decoder: no feature mask given → every position (HF runs the padded positions causally too)
      expect(maxRelErr(r.ff!.get(l)!, decPre.subarray(l * per, (l + 1) * per))).toBeLessThan(1e-4);
      // encoder: features are the real source tokens only
      expect(maxRelErr(r.encoderFF!.get(l)!, realRows(encPre.subarray(l * per, (l + 1) * per), mask))).toBeLessThan(1e-4);
    }
    // decoder features with the label mask: padded target positions are not features
    const masked = await model.forward(
      { ids: dec, batch: B, seq: T, encoderIds: src, encoderSeq: T, encoderMask: mask },
      { output: 'hidden', captureFF: [3], featureMask: labelMask },
    );
    expect(maxRelErr(masked.ff!.get(3)!, realRows(decPre.subarray(3 * per, 4 * per), labelMask))).toBeLessThan(1e-4);
  });

  test('teacher-forcing batches of the first two test pairs rebuild the reference inputs and features', async () => {
    const pairs = (
      await readParallel(sharedPath('data', 'multi30k', 'test_2016_flickr.en.gz'), sharedPath('data', 'multi30k', 'test_2016_flickr.de.gz'))
    ).slice(0, 2);
    const [batch] = translationBatches(pairs, tokenizer, { decoderStartTokenId: 2, padTokenId: 2, batchSize: 2 });
    const ref = await SafetensorsReader.open(path.join(dir, 'reference.safetensors'));
    const srcRef = Int32Array.from(await ref.readF32('input_ids'));
    const maskRef = Uint8Array.from(await ref.readF32('attention_mask'));
    const labels = Int32Array.from(await ref.readF32('labels'));
    const decPre = await ref.readF32('dec_fc1_preact');
    await ref.close();
    expect(Array.from(batch!.input.encoderIds!)).toEqual(Array.from(srcRef));
    expect(Array.from(batch!.input.encoderMask!)).toEqual(Array.from(maskRef));
    const labelMask: number[] = Array.from(labels, (v) => (v === -100 ? 0 : 1));
    expect(Array.from(batch!.featureMask!)).toEqual(labelMask);
    expect(batch!.featureRows).toBe(labelMask.reduce((a, b) => a + b, 0));
    for (let b = 0; b < 2; b++) {
      expect(batch!.input.ids![b * 22]).toBe(2);
      for (let t = 1; t < 22; t++) if (labels[b * 22 + t - 1] !== -100) expect(batch!.input.ids![b * 22 + t]).toBe(labels[b * 22 + t - 1]);
    }
    const r = await model.forward(batch!.input, { output: 'hidden', captureFF: [5], captureEncoderFF: [0], featureMask: batch!.featureMask! });
    expect(r.ff!.get(5)!.length).toBe(batch!.featureRows * 512);
    expect(r.encoderFF!.get(0)!.length).toBe(batch!.encoderFeatureRows! * 512);
    const per = 2 * 22 * 512;
    const rows: number[] = [];
    labelMask.forEach((m, i) => m && rows.push(i));
    const want = new Float32Array(rows.length * 512);
    rows.forEach((row, j) => want.set(decPre.subarray(5 * per + row * 512, 5 * per + (row + 1) * 512), j * 512));
    expect(maxRelErr(r.ff!.get(5)!, want)).toBeLessThan(1e-4);
  });

  test('withFF on either stack: a permuted FF leaves the logits unchanged, a foreign FF changes them', async () => {
    const ref = await SafetensorsReader.open(path.join(dir, 'reference.safetensors'));
    const src = Int32Array.from(await ref.readF32('input_ids'));
    const mask = Uint8Array.from(await ref.readF32('attention_mask'));
    await ref.close();
    const input = { ids: src, batch: 2, seq: 22, encoderIds: src, encoderSeq: 22, encoderMask: mask };
    const base = (await model.forward(input, { output: 'logits' })).logits;
    const permute = (ff: ReturnType<Model['ffWeights']>) => {
      const dFF = 512;
      const d = 128;
      const perm = Array.from({ length: dFF }, (_, i) => (i * 37 + 11) % dFF); // 37 is coprime with 512
      const wIn = new Float32Array(ff.wIn.length);
      const bIn = new Float32Array(dFF);
      const wOut = new Float32Array(ff.wOut.length);
      perm.forEach((p, i) => {
        wIn.set(ff.wIn.subarray(p * d, (p + 1) * d), i * d);
        bIn[i] = ff.bIn![p]!;
        for (let r = 0; r < d; r++) wOut[r * dFF + i] = ff.wOut[r * dFF + p]!;
      });
      return { wIn, bIn, wOut, bOut: ff.bOut! };
    };
    const view = await model.withFF([
      { stack: 'encoder', layer: 2, ff: permute(model.ffWeights(2, 'encoder')) },
      { stack: 'decoder', layer: 4, ff: permute(model.ffWeights(4, 'decoder')) },
    ]);
    try {
      expect(maxRelErr((await view.forward(input, { output: 'logits' })).logits, base)).toBeLessThan(1e-5);
      expect(Array.from(view.ffWeights(3, 'encoder').wIn.subarray(0, 8))).toEqual(Array.from(model.ffWeights(3, 'encoder').wIn.subarray(0, 8)));
    } finally {
      view.dispose();
    }
    const swapped = await model.withFF([{ stack: 'encoder', layer: 0, ff: model.ffWeights(5, 'encoder') }]);
    try {
      expect(maxRelErr((await swapped.forward(input, { output: 'logits' })).logits, base)).toBeGreaterThan(1e-3);
    } finally {
      swapped.dispose();
    }
  });

  test('greedy translations of the first 20 test sentences equal reference.json token for token', async () => {
    const refJson = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as {
      greedy_test_first20: { src: string; ids: number[]; text: string }[];
    };
    const cases = refJson.greedy_test_first20;
    expect(cases.length).toBe(20);
    const generation = await loadGenerationConfig(dir);
    expect(generation).toMatchObject({ decoderStartTokenId: 2, eosTokenId: 0, forcedEosTokenId: 0, maxLength: 64, badWordsIds: [[2]] });
    const progress: Array<{ done: number; detail?: string }> = [];
    const out = await translate(model, tokenizer, cases.map((c) => c.src), { generation, batchSize: 7, onProgress: (p) => progress.push(p) });
    // each batch's decoding steps are reported as they run, not only the batch's end (tester CE)
    expect(progress.some((p) => /^decoding [67] sentences, step \d+ of at most \d+$/.test(p.detail ?? ''))).toBe(true);
    // the decoding steps, max_length − 1 at most: not the passes' layers (tester FD: "step 7 of at most 7")
    for (const p of progress) if (p.detail) expect(p.detail).toMatch(/ of at most 63$/);
    expect(progress.filter((p) => p.detail === undefined).map((p) => p.done)).toEqual([7, 14, 20]);
    cases.forEach((c, i) => {
      // reference ids: start token, tokens, eos, then pad to the batch length
      const eos = c.ids.indexOf(0, 1);
      expect(out[i]!.ids).toEqual(c.ids.slice(1, eos + 1));
      expect(out[i]!.text).toBe(c.text);
    });
    // without generation: the folder's generation_config.json, which loadModel read (as from_pretrained does);
    // before, translate() fell back to max_length 20 without bad_words_ids and cut sentences off
    expect(model.generation).toEqual(await loadGenerationConfig(dir, model.config as Record<string, unknown>));
    const byDefault = await translate(model, tokenizer, cases.map((c) => c.src), { batchSize: 7 });
    expect(byDefault.map((t) => t.text)).toEqual(cases.map((c) => c.text));
  });

  test('a source is kept up to the encoder\'s 128 positions; a longer one is cut to them and said so', async () => {
    const generation = await loadGenerationConfig(dir);
    const sentence = 'A man in a blue shirt is standing on a ladder cleaning windows. ';
    const medium = sentence.repeat(6).trim(); // over 64 ids, under 128
    const long = sentence.repeat(20).trim(); // over 128
    const mediumIds = tokenizer.encode(medium);
    expect(mediumIds.length).toBeGreaterThan(64);
    expect(mediumIds.length).toBeLessThan(128);
    expect(tokenizer.encode(long).length).toBeGreaterThan(128);
    const [m, l] = await translate(model, tokenizer, [medium, long], { generation });
    // the whole medium source is read: what generate gives on all of its ids (before: cut to 64 silently)
    const g = await model.generate({ ids: Int32Array.from(mediumIds), batch: 1, seq: mediumIds.length }, generation);
    const row = Array.from(g.ids.subarray(1, g.length));
    expect(m!.ids).toEqual(row.slice(0, row.indexOf(0) + 1));
    expect(m!.truncated).toBe(false);
    const [cut64] = await translate(model, tokenizer, [medium], { generation, maxSourceTokens: 64 });
    expect(cut64!.truncated).toBe(true);
    expect(cut64!.ids).not.toEqual(m!.ids);
    // the long one is cut to the positions (not refused as SEQUENCE_TOO_LONG), and its translation says so
    expect(l!.truncated).toBe(true);
    expect((await translate(model, tokenizer, [long], { generation, maxSourceTokens: 128 }))[0]!.ids).toEqual(l!.ids);
    const r = await evaluateTranslation(model, tokenizer, [{ source: medium, target: 'x' }, { source: long, target: 'y' }], { generation });
    expect(r.truncated).toBe(1);
    await expect(translate(model, tokenizer, [medium], { maxSourceTokens: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // feature batches cut only when asked, and count the pairs cut
    const pairs = [{ source: medium, target: long }, { source: 'a dog.', target: 'ein Hund.' }, { source: long, target: 'x' }];
    expect(translationBatches(pairs, tokenizer, { decoderStartTokenId: 2, padTokenId: 2 })[0]!.truncated).toBe(0);
    const [b] = translationBatches(pairs, tokenizer, { decoderStartTokenId: 2, padTokenId: 2, maxSourceTokens: 128, maxTargetTokens: 128 });
    expect(b!.truncated).toBe(2);
    expect(b!.input.encoderSeq).toBe(128);
    expect(b!.input.seq).toBe(128);
  });

  test('a folder without a decoder start id loads (a forward pass needs none); translate() says what is missing', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-nostart-'));
    try {
      for (const f of fs.readdirSync(dir)) if (f !== 'config.json' && f !== 'generation_config.json') fs.symlinkSync(path.join(dir, f), path.join(tmp, f));
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const gen = JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
      delete cfg.decoder_start_token_id;
      delete gen.decoder_start_token_id;
      fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(cfg));
      fs.writeFileSync(path.join(tmp, 'generation_config.json'), JSON.stringify(gen));
      // before: loadModel itself failed, INVALID_CONFIG
      const m = await loadModel(tmp);
      try {
        expect(m.generation).toBeUndefined();
        await expect(translate(m, tokenizer, ['a dog.'])).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('decoder_start_token_id') });
      } finally {
        m.dispose();
      }
      // any other bad setting is still refused at load
      fs.writeFileSync(path.join(tmp, 'generation_config.json'), JSON.stringify({ ...gen, decoder_start_token_id: 2, num_beams: 0 }));
      await expect(loadModel(tmp)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('num_beams') });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('beam search (4 beams): well-formed outputs; 1 beam is greedy', async () => {
    const refJson = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { greedy_test_first20: { src: string; ids: number[] }[] };
    const sources = refJson.greedy_test_first20.map((c) => c.src);
    const generation = await loadGenerationConfig(dir);
    const beam = await translate(model, tokenizer, sources, { generation: { ...generation, numBeams: 4 }, batchSize: 8 });
    for (const t of beam) {
      expect(t.ids[t.ids.length - 1]).toBe(0); // ends with eos
      expect(t.ids.slice(0, -1)).not.toContain(0);
      expect(t.ids).not.toContain(2); // bad_words_ids bans pad/start
      expect(t.text.length).toBeGreaterThan(0);
    }
    const one = await translate(model, tokenizer, sources.slice(0, 5), { generation: { ...generation, numBeams: 1 } });
    one.forEach((t, i) => {
      const ids = refJson.greedy_test_first20[i]!.ids;
      expect(t.ids).toEqual(ids.slice(1, ids.indexOf(0, 1) + 1));
    });
  });

  test('many beams: a batch is split to fit memory (same translations), and a sentence that alone cannot fit is refused before any allocation', async () => {
    // tester EO: num_beams 100000 in generation_config.json took 23 GB and outlived SIGTERM by minutes
    const refJson = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { greedy_test_first20: { src: string }[] };
    const sources = refJson.greedy_test_first20.slice(0, 8).map((c) => c.src);
    const generation = { ...(await loadGenerationConfig(dir)), numBeams: 3 };
    const whole = await translate(model, tokenizer, sources, { generation, batchSize: 8 });
    const spec = model.encoderSpec!;
    const longest = 40; // no source of these 8 is longer: a quarter of the "machine" then holds at most 2-3 sentences
    const per = generateBytes(spec, model.spec, 1, longest, generation.maxLength, 3);
    const totalmem = jest.spyOn(modelModule, 'machineBytes').mockReturnValue(4 * 2.5 * per);
    const batches: number[] = [];
    try {
      const split = await translate(model, tokenizer, sources, {
        generation,
        batchSize: 8,
        onProgress: (p) => void (p.detail === undefined && batches.push(p.done)),
      });
      expect(split.map((t) => t.ids)).toEqual(whole.map((t) => t.ids));
      expect(batches.length).toBeGreaterThanOrEqual(3); // 8 sentences in batches of at most 2 or 3, not one of 8
      expect(batches[batches.length - 1]).toBe(8);
    } finally {
      totalmem.mockRestore();
    }
    const t0 = Date.now();
    const rss0 = process.memoryUsage().rss;
    await expect(translate(model, tokenizer, sources.slice(0, 1), { generation: { ...generation, numBeams: 1_000_000 } })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringMatching(/^decoding a sentence with num_beams 1,000,000 up to max_length 64 needs about [\d.]+ GiB, more than half of this machine's .*lower num_beams or max_length \(generation_config.json\)$/),
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 * 2 ** 20);
  });

  test('greedy BLEU on test_2016_flickr equals eval.json (±0.05)', async () => {
    const evalJson = JSON.parse(fs.readFileSync(path.join(dir, 'eval.json'), 'utf8')) as { bleu: { test: number } };
    const pairs = await readParallel(
      sharedPath('data', 'multi30k', 'test_2016_flickr.en.gz'),
      sharedPath('data', 'multi30k', 'test_2016_flickr.de.gz'),
    );
    expect(pairs.length).toBe(1000);
    const r = await evaluateTranslation(model, tokenizer, pairs, { generation: await loadGenerationConfig(dir), batchSize: 100 });
    expect(Math.abs(r.bleu.score - evalJson.bleu.test)).toBeLessThanOrEqual(0.05);
    expect(r.hypotheses.length).toBe(1000);
  });

  test('an aborted translation stops with ABORTED', async () => {
    const refJson = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { greedy_test_first20: { src: string }[] };
    const ac = new AbortController();
    let err: unknown;
    try {
      await translate(model, tokenizer, refJson.greedy_test_first20.map((c) => c.src), {
        generation: await loadGenerationConfig(dir),
        batchSize: 4,
        signal: ac.signal,
        onProgress: () => ac.abort(),
      });
    } catch (e) {
      err = e;
    }
    expect(isFfmergeError(err, 'ABORTED')).toBe(true);
  });

  test('bad input: mismatched parallel files, non-seq2seq generation, source too long', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-par-'));
    try {
      fs.writeFileSync(path.join(tmp, 'a.en'), 'one\ntwo\nthree\n');
      fs.writeFileSync(path.join(tmp, 'a.de'), 'eins\nzwei\n');
      let err: unknown;
      try {
        await readParallel(path.join(tmp, 'a.en'), path.join(tmp, 'a.de'));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FfmergeError);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    let err: unknown;
    try {
      await model.generate({ ids: new Int32Array(200).fill(5), batch: 1, seq: 200 }, await loadGenerationConfig(dir));
    } catch (e) {
      err = e;
    }
    expect(isFfmergeError(err, 'SEQUENCE_TOO_LONG')).toBe(true);
    let err2: unknown;
    try {
      await evaluateTranslation(model, tokenizer, []);
    } catch (e) {
      err2 = e;
    }
    expect(isFfmergeError(err2, 'INVALID_DATA')).toBe(true);
  });
});
