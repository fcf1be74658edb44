import { loadAddon } from '../lib/native/loader';

describe('native loader', () => {
  it('loads a build and says which one and why', () => {
    const a = loadAddon();
    expect(['cpu', 'cuda']).toContain(a.info.variant);
    expect(a.info.threads).toBeGreaterThanOrEqual(1);
    expect(typeof a.info.gemmKernel).toBe('string');
    expect(a.reason.length).toBeGreaterThan(0);
    expect(loadAddon()).toBe(a);
  });

  it('falls back to the CPU build when forced', () => {
    jest.isolateModules(() => {
      const prev = process.env.FFMERGE_BACKEND;
      process.env.FFMERGE_BACKEND = 'cpu';
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { loadAddon: fresh } = require('../lib/native/loader') as typeof import('../lib/native/loader');
        const a = fresh();
        expect(a.info.variant).toBe('cpu');
        expect(a.reason).toMatch(/FFMERGE_BACKEND=cpu/);
      } finally {
        if (prev === undefined) delete process.env.FFMERGE_BACKEND;
        else process.env.FFMERGE_BACKEND = prev;
      }
    });
  });
});

describe('an install without the addon (npm install --ignore-scripts where no prebuild fits)', () => {
  it('fails with NATIVE_LOAD_FAILED and advises "npm rebuild ffmerge", a command a consumer has', () => {
    // the loader, as installed in a package folder that has neither a build nor a prebuild
    const fs = require('node:fs') as typeof import('node:fs');
    const os = require('node:os') as typeof import('node:os');
    const path = require('node:path') as typeof import('node:path');
    const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-noaddon-'));
    try {
      fs.writeFileSync(path.join(pkg, 'package.json'), '{"name":"ffmerge","version":"0.0.0"}');
      fs.mkdirSync(path.join(pkg, 'lib', 'native'), { recursive: true });
      fs.copyFileSync(path.join(__dirname, '..', 'lib', 'native', 'loader.ts'), path.join(pkg, 'lib', 'native', 'loader.ts'));
      fs.copyFileSync(path.join(__dirname, '..', 'lib', 'native', 'env.ts'), path.join(pkg, 'lib', 'native', 'env.ts'));
      fs.copyFileSync(path.join(__dirname, '..', 'lib', 'errors.ts'), path.join(pkg, 'lib', 'errors.ts'));
      fs.mkdirSync(path.join(pkg, 'node_modules'));
      fs.symlinkSync(path.dirname(require.resolve('node-gyp-build/package.json')), path.join(pkg, 'node_modules', 'node-gyp-build'), 'dir');
      const { loadAddon } = require(path.join(pkg, 'lib', 'native', 'loader.ts')) as typeof import('../lib/native/loader');
      // said as found nowhere, in this folder (tester ES: "not built for linux-x64" when its prebuild was removed)
      expect(() => loadAddon()).toThrow(expect.objectContaining({ code: 'NATIVE_LOAD_FAILED', message: expect.stringMatching(new RegExp(`^no ffmerge native addon was found for ${process.platform}-${process.arch} in .*ffmerge-noaddon-.*run "npm rebuild ffmerge"`)) }));
      // a prebuild that is there but does not load (a glibc older than its build machine's, a damaged file):
      // the same advice (before: only the dlopen error)
      fs.mkdirSync(path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`), { recursive: true });
      fs.writeFileSync(path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, 'ffmerge.glibc.node'), 'not a shared object');
      jest.resetModules();
      const again = require(path.join(pkg, 'lib', 'native', 'loader.ts')) as typeof import('../lib/native/loader');
      expect(() => again.loadAddon()).toThrow(expect.objectContaining({ code: 'NATIVE_LOAD_FAILED', message: expect.stringMatching(/failed to load: .*; run "npm rebuild ffmerge", which compiles it here/) }));
    } finally {
      fs.rmSync(pkg, { recursive: true, force: true });
    }
  });
});

describe('npm run build:cuda in an installed package (no cmake-js, a development dependency)', () => {
  it('says what it needs and exits 1 instead of a stack trace (tester AZ)', () => {
    const fs = require('node:fs') as typeof import('node:fs');
    const os = require('node:os') as typeof import('node:os');
    const path = require('node:path') as typeof import('node:path');
    const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
    const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-nocmakejs-'));
    try {
      // the script as installed, and an nvcc on PATH so that it gets as far as cmake-js
      fs.mkdirSync(path.join(pkg, 'scripts'));
      fs.copyFileSync(path.join(__dirname, '..', 'scripts', 'build-cuda.js'), path.join(pkg, 'scripts', 'build-cuda.js'));
      fs.mkdirSync(path.join(pkg, 'bin'));
      fs.writeFileSync(path.join(pkg, 'bin', 'nvcc'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      const r = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'build-cuda.js')], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${path.join(pkg, 'bin')}${path.delimiter}${process.env.PATH}`, NODE_PATH: '' },
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the CUDA build needs cmake-js, a development dependency that an installed package does not have/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    } finally {
      fs.rmSync(pkg, { recursive: true, force: true });
    }
  });
});
