/**
 * A CLI process started ahead of time: loads the CLI (the slow part of a ts-node start-up), prints "ready",
 * then reads one line of JSON (the argument list) from stdin and runs `ffmerge <args>` as the real binary
 * would, exiting with its code. Lets tests start several runs at the same instant (output races) and kill a
 * run at a chosen moment of its work rather than of its start-up (SIGKILL tests).
 */
import { main } from '../../lib/cli/main';

process.stdout.write('ready\n');
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  buf += chunk;
  const nl = buf.indexOf('\n');
  if (nl < 0) return;
  process.stdin.pause();
  const args = JSON.parse(buf.slice(0, nl)) as string[];
  void main(['node', 'ffmerge', ...args]).then((code) => {
    process.exitCode = code;
    process.stdin.destroy();
  });
});
