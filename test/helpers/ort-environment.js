/**
 * jest environment for tests that run onnxruntime-node. Its native binding creates output typed arrays in
 * Node's own realm, and onnxruntime-common checks them with `instanceof` against the test context's
 * constructors, which jest makes separately (every output fails with "A float32 tensor's data must be type
 * of function Float32Array()"). Here the context uses Node's typed-array constructors, so both sides agree.
 * Opt in per file with the docblock `@jest-environment ./test/helpers/ort-environment.js`.
 */
const { TestEnvironment } = require('jest-environment-node');

const TYPED = [
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'ArrayBuffer',
];

class OrtEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of TYPED) this.global[name] = globalThis[name];
  }
}

module.exports = OrtEnvironment;
