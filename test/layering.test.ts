/**
 * Which folders of lib/ may import which: the plain references are test oracles and a separate entry
 * (ffmerge/reference), never on a production path; the pipeline knows nothing of the CLI that formats it.
 * Read from the sources' import lines, resolved to files.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const lib = path.join(__dirname, '..', 'lib');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** file → the lib/ files it imports or re-exports (relative specifiers only), as paths relative to lib/. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]/gm), ...text.matchAll(/\b(?:require|import)\(\s*['"](\.[^'"]+)['"]\s*\)/g)].map((m) => m[1]!);
  return specs.map((s) => path.relative(lib, path.resolve(path.dirname(file), s)));
}

const all = sources(lib).map((f) => ({ file: path.relative(lib, f), imports: importsOf(f) }));
const inside = (p: string, folder: string) => p === folder || p.startsWith(folder + path.sep);

describe('lib/ layering', () => {
  it('reads the import lines (the scan sees the imports it checks)', () => {
    const index = all.find((f) => f.file === 'index.ts')!;
    expect(index.imports).toContain(path.join('pipeline', 'compress'));
    expect(all.find((f) => f.file === path.join('reference', 'index.ts'))!.imports).toContain(path.join('reference', 'correlation'));
  });

  it('no production file imports lib/reference (the main entry included)', () => {
    const offenders = all.filter((f) => !inside(f.file, 'reference')).flatMap((f) => f.imports.filter((i) => inside(i, 'reference')).map((i) => `${f.file} → ${i}`));
    expect(offenders).toEqual([]);
  });

  it('nothing in lib/pipeline imports lib/cli', () => {
    const offenders = all.filter((f) => inside(f.file, 'pipeline')).flatMap((f) => f.imports.filter((i) => inside(i, 'cli')).map((i) => `${f.file} → ${i}`));
    expect(offenders).toEqual([]);
  });
});
