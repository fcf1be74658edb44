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
