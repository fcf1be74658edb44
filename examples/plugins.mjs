// A recover method of your own, given to one compress call; this module's export is also what the CLI loads:
// ffmerge compress --plugins plugins.mjs --method permute --recover halve-out. Run: node examples/plugins.mjs
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { compress } from 'ffmerge';

/** Halves the merged FF's output. A recover method returns new arrays, never writes into the ones it is given. */
const halveOut = {
  name: 'halve-out',
  description: "halves the merged FF's output",
  async recover(_ctx, m) {
    return { ...m, merged: { ...m.merged, wOut: m.merged.wOut.map((v) => v / 2) } };
  },
};
export const recoverMethods = [halveOut];

// run as a script (not loaded by --plugins): compress the bundled model with it
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('ffmerge/package.json')), 'models', 'llama-stories260k');
  const r = await compress(dir, {
    calibration: path.join(dir, 'calibration.txt'),
    calibrationTokens: 6144,
    k: 2,
    method: 'permute',
    recover: 'halve-out',
    plugins: { recoverMethods }, // this call's own: another call does not see it
  });
  console.log(`window ${r.windows[0].window}, recover ${r.recover}: perplexity ${r.base.validation.toFixed(2)} -> ${r.merged.validation.toFixed(2)}`);
}
