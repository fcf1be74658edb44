// Export the bundled model to ONNX as it is, and compressed (each merged FF one shared initializer), then
// generate from the compressed folder with transformers.js, offline. Run: node examples/onnx-transformers-js.mjs
// (needs @huggingface/transformers: npm_config_onnxruntime_node_install=skip npm install @huggingface/transformers,
// since onnxruntime-node's install script otherwise downloads from api.nuget.org)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { compress, exportOnnx } from 'ffmerge';
import { env, pipeline } from '@huggingface/transformers';

const model = path.join(path.dirname(createRequire(import.meta.url).resolve('ffmerge/package.json')), 'models', 'llama-stories260k');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-onnx-'));
try {
  const plain = await exportOnnx(model, { out: path.join(work, 'stories-onnx') });
  const out = path.join(work, 'stories-k2-onnx');
  const r = await compress(model, { k: 2, calibration: path.join(model, 'calibration.txt'), calibrationTokens: 6144, format: 'onnx', out });
  console.log(`onnx/model.onnx: ${plain.onnxBytes} bytes as it is, ${r.out.bytes} merged`);
  env.allowRemoteModels = false; // load the folder from disk
  env.localModelPath = work;
  const gen = await pipeline('text-generation', 'stories-k2-onnx', { dtype: 'fp32' });
  const [{ generated_text }] = await gen('Once upon a time', { max_new_tokens: 16, do_sample: false });
  console.log(generated_text);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
