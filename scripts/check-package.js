#!/usr/bin/env node
'use strict';
// CI check of the package as a consumer gets it: `npm pack` (which builds the prebuilt addon, see prebuild.js),
// then a fresh project installs the tarball with every compiler on PATH replaced by a stub that records being
// called. It fails unless the install used the prebuild, invoked no compiler, and both `require('ffmerge')` and
// `import 'ffmerge'` work and load the prebuilt addon. The install time is printed (the target is
// ≤ 10 s on the CI machine with a warm npm cache), not asserted: timings are for benchmarks, not tests.
//
//   node scripts/check-package.js [--tarball path.tgz]   (default: npm pack into a temp folder)
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-package-'));
const fail = (msg) => {
  process.stderr.write(`check-package: FAIL: ${msg}\n(left ${tmp} for inspection)\n`);
  process.exit(1);
};
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
};

let tarball;
const i = process.argv.indexOf('--tarball');
if (i > 0) {
  tarball = path.resolve(process.argv[i + 1]);
} else {
  // (not --json: the build scripts npm runs print to the same stdout)
  run('npm', ['pack', '--pack-destination', tmp], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  tarball = path.join(tmp, fs.readdirSync(tmp).find((f) => f.endsWith('.tgz')));
}
const listing = run('tar', ['-tzf', tarball]).stdout.split('\n');
const prebuild = listing.find((f) => /^package\/prebuilds\/linux-x64\/.*\.node$/.test(f));
if (process.platform === 'linux' && process.arch === 'x64' && !prebuild) fail(`the tarball has no linux-x64 prebuild:\n${listing.filter((f) => f.includes('prebuild')).join('\n')}`);
// every file of the package the packaged README sends a user to (examples/, DEVELOPERS.md) is in the tarball
// (tester ES: the README cited both, and neither was shipped)
const cited = [...new Set(fs.readFileSync(path.join(root, 'README.md'), 'utf8').match(/\bexamples\/[\w.-]+\.(?:c?js|mjs)\b|\bDEVELOPERS\.md\b/g))];
const unshipped = cited.filter((f) => !listing.includes(`package/${f}`));
if (unshipped.length) fail(`the README names ${unshipped.join(', ')}, which the tarball lacks (package.json "files")`);

// Compiler stubs: any compile attempt is recorded and fails.
const stubs = path.join(tmp, 'stubs');
const calls = path.join(tmp, 'compiler-calls.log');
fs.mkdirSync(stubs);
for (const c of ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'make', 'cmake']) {
  fs.writeFileSync(path.join(stubs, c), `#!/bin/sh\necho "${c} $*" >> "${calls}"\nexit 1\n`, { mode: 0o755 });
}

const consumer = path.join(tmp, 'consumer');
fs.mkdirSync(consumer);
fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2));
const env = { ...process.env, PATH: `${stubs}${path.delimiter}${process.env.PATH}` };
const t0 = Date.now();
const inst = run('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', tarball], { cwd: consumer, env });
const seconds = (Date.now() - t0) / 1000;
if (fs.existsSync(calls)) fail(`the install invoked a compiler:\n${fs.readFileSync(calls, 'utf8')}`);
const log = `${inst.stdout}\n${inst.stderr}`;
if (!/using the prebuilt addon/.test(log)) {
  // npm may skip dependency install scripts (npm 11's install-script policy): node-gyp-build then finds the
  // prebuild at run time anyway, which the require/import checks below confirm.
  process.stderr.write('check-package: note: the install script did not report (install scripts skipped by npm?)\n');
}

// (through the package's entry: "exports" keeps its dist/ files private)
const probe = `const a = require('ffmerge').loadAddon(); if (a.origin !== 'prebuilt') { console.error('addon origin: ' + a.origin + ' ' + a.path); process.exit(1); } console.log(a.origin, a.path);`;
run(process.execPath, ['-e', probe], { cwd: consumer, env });
// ffmerge/package.json is exported too: the examples find the bundled model beside it
fs.writeFileSync(path.join(consumer, 'use.cjs'), "const f = require('ffmerge'); if (typeof f.compress !== 'function' || typeof f.loadModel !== 'function' || require('ffmerge/package.json').name !== 'ffmerge' || typeof require('ffmerge/reference').pearsonReference !== 'function') process.exit(1); console.log('require ok');\n");
fs.writeFileSync(path.join(consumer, 'use.mjs'), "import { compress, loadModel } from 'ffmerge'; import f from 'ffmerge'; if (typeof compress !== 'function' || typeof loadModel !== 'function' || f.compress !== compress) process.exit(1); console.log('import ok');\n");
run(process.execPath, ['use.cjs'], { cwd: consumer, env });
run(process.execPath, ['use.mjs'], { cwd: consumer, env });
// The declarations a TypeScript consumer gets: they compile on their own (skipLibCheck off) and hold none of
// the members marked @internal (tsconfig.build.json's stripInternal).
const installed = path.join(consumer, 'node_modules', 'ffmerge');
const declarations = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? declarations(path.join(dir, e.name)) : e.name.endsWith('.d.ts') ? [path.join(dir, e.name)] : []));
const leaked = declarations(path.join(installed, 'dist')).filter((f) => fs.readFileSync(f, 'utf8').includes('@internal'));
if (leaked.length) fail(`declarations that expose @internal members:\n${leaked.join('\n')}`);
// with exactOptionalPropertyTypes, a caller passes its own optional signal on as it is (tester DZ: TS2379)
fs.writeFileSync(
  path.join(consumer, 'use.ts'),
  "import { compress, loadModel, Model } from 'ffmerge';\nimport { pearsonReference } from 'ffmerge/reference';\nexport const used: unknown[] = [compress, loadModel, pearsonReference, (m: Model) => m.layers()];\n" +
    "export async function forwarded(dir: string, signal?: AbortSignal): Promise<void> {\n  (await loadModel(dir, { signal, stream: undefined })).dispose();\n  await compress(dir, { k: 2, signal, onProgress: undefined, out: undefined });\n}\n",
);
for (const resolution of ['node16', 'node10']) {
  const module = resolution === 'node16' ? 'node16' : 'commonjs';
  run(process.execPath, [require.resolve('typescript/bin/tsc'), '--noEmit', '--strict', '--exactOptionalPropertyTypes', '--skipLibCheck', 'false', '--module', module, '--moduleResolution', resolution, '--types', 'node', '--typeRoots', path.join(root, 'node_modules', '@types'), 'use.ts'], { cwd: consumer, env });
}
const version = run(process.execPath, [path.join('node_modules', 'ffmerge', 'bin', 'ffmerge.js'), '--version'], { cwd: consumer, env }).stdout;
if (!/native addon prebuilt/.test(version)) fail(`ffmerge --version does not report the prebuilt addon:\n${version}`);

process.stdout.write(`check-package: ok: ${path.basename(tarball)} installed in ${seconds.toFixed(1)} s with no compiler; prebuild ${prebuild}; require, import and the TypeScript declarations work\n${version}`);
fs.rmSync(tmp, { recursive: true, force: true });
