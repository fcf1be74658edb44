/**
 * @jest-environment ./test/helpers/ort-environment.js
 *
 * transformers.js loads ffmerge's ONNX export of merged gpt2-sotu from the local folder (remote loading off),
 * as it loads an Optimum export, and its greedy generation equals ffmerge's own (lib/eval/generate.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../lib/pipeline/compress';
import { loadModel } from '../lib/model/load';
import { greedy } from '../lib/eval/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { describeShared, sharedPath } from './helpers/shared';

describeShared('fixtures/gpt2-sotu', 'transformers.js on the ONNX export of merged gpt2-sotu', () => {
  jest.setTimeout(300_000);
  const FIX = sharedPath('fixtures', 'gpt2-sotu');
  let tmp: string;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-tjs-'));
    const common = { method: 'permute', k: 4, window: '4-7', calibration: sharedPath('data', 'lm', 'valid.txt'), calibrationTokens: 2048, validationTokens: 512 } as const;
    await compress(FIX, { ...common, out: path.join(tmp, 'tied'), format: 'tied' });
    await compress(FIX, { ...common, out: path.join(tmp, 'gpt2-k4'), format: 'onnx' });
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('the text-generation pipeline gives ffmerge\'s greedy continuation', async () => {
    // required here, not imported at the top: it is a large module only this test needs
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tjs = require('@huggingface/transformers') as typeof import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = tmp;
    const prompt = 'The Congress shall have power';
    const maxNew = 16;

    const tok = await loadTokenizer(FIX);
    const promptIds = Array.from(tok.encode(prompt));
    const model = await loadModel(path.join(tmp, 'tied'));
    const want = Array.from(await greedy(model, promptIds, maxNew));
    model.dispose();

    // token ids through the model class (what the pipeline runs)
    const tjsTok = await tjs.AutoTokenizer.from_pretrained('gpt2-k4');
    const enc = tjsTok(prompt) as { input_ids: import('@huggingface/transformers').Tensor };
    expect(Array.from(enc.input_ids.data as BigInt64Array, Number)).toEqual(promptIds);
    const lm = await tjs.AutoModelForCausalLM.from_pretrained('gpt2-k4', { dtype: 'fp32', device: 'cpu' });
    const out = (await lm.generate({ ...enc, max_new_tokens: maxNew, do_sample: false })) as import('@huggingface/transformers').Tensor;
    expect(Array.from(out.data as BigInt64Array, Number)).toEqual(want);
    await lm.dispose();

    // and the pipeline's text
    const gen = await tjs.pipeline('text-generation', 'gpt2-k4', { dtype: 'fp32', device: 'cpu' });
    const text = (await gen(prompt, { max_new_tokens: maxNew, do_sample: false })) as { generated_text: string }[];
    expect(text[0]!.generated_text).toBe(tok.decode(Int32Array.from(want)));
    await gen.dispose();
  });
});
