/**
 * The addon built here loads on glibc 2.34 (RHEL 9, Ubuntu 22.04), as README promises of the prebuild, which is
 * built the same way: no dynamic symbol asks for a newer GLIBC_x.y. native/binding/glibc_floor.cc keeps
 * arc4random (GLIBC_2.36, reached by the static libstdc++) inside the addon; a guard that compiled it out went
 * unnoticed until a prebuild was refused (tester FF). objdump ships with the linker that built the addon; where
 * it (or glibc) is absent the test is skipped and says so.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const FLOOR = [2, 34];
const addon = path.join(__dirname, '..', 'build', 'Release', 'ffmerge.node');
const glibc = process.platform === 'linux' && Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
const objdump = spawnSync('objdump', ['--version']).status === 0;
const run = glibc && objdump && fs.existsSync(addon) ? test : test.skip;
if (run === test.skip) console.warn(`glibc-floor: skipped (${!glibc ? 'not Linux with glibc' : !objdump ? 'no objdump' : `no ${addon}`})`);

run('the addon asks for no glibc newer than 2.34', () => {
  const dump = spawnSync('objdump', ['-T', addon], { encoding: 'utf8' });
  expect(dump.status).toBe(0);
  const over = [...dump.stdout.matchAll(/\s\(?GLIBC_(\d+)\.(\d+)(?:\.\d+)?\)?\s+(\S+)/g)]
    .filter((m) => Number(m[1]) > FLOOR[0]! || (Number(m[1]) === FLOOR[0] && Number(m[2]) > FLOOR[1]!))
    .map((m) => `${m[3]}@GLIBC_${m[1]}.${m[2]}`);
  expect(over).toEqual([]);
  // the replacement is the addon's own, hidden: defined inside it, not exported
  expect(dump.stdout).not.toMatch(/\sarc4random\s*$/m);
});
