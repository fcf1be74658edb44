/**
 * Tests clean up after themselves: every folder the synthetic-model helpers make in the temp folder is removed
 * by removeSyntheticDirs. A file that made them without it left two folders behind on every CI run.
 * Read from the test sources, as layering.test.ts reads lib/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const dir = __dirname;
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.test.ts'));
// the helpers that call tempDir, whose folders only removeSyntheticDirs removes
const makers = /\b(?:syntheticGpt2|syntheticLlama|syntheticVit|tempDir)\(/;

describe('test hygiene', () => {
  it('sees the files it checks', () => {
    expect(files.filter((f) => makers.test(fs.readFileSync(path.join(dir, f), 'utf8'))).length).toBeGreaterThan(10);
  });

  it('every test file that makes synthetic models removes their folders', () => {
    const leaking = files.filter((f) => {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      return makers.test(text) && !/\bremoveSyntheticDirs\b/.test(text.replace(/^import[^;]*;/gm, ''));
    });
    expect(leaking).toEqual([]);
  });
});
