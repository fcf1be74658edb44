// Embedding ffmerge in an http server: each request runs a compress job in-process; the event loop stays
// free for other requests while it runs (every heavy step is native or in a worker), and a client that goes
// away aborts its job through an AbortSignal (the temporary output is removed).
//   node examples/server.cjs [port]      then: curl -s localhost:PORT/compress?k=2   and   curl -s localhost:PORT/health
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { compress } = require('ffmerge');

const model = path.join(path.dirname(require.resolve('ffmerge/package.json')), 'models', 'llama-stories260k');

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/health') return void res.end('ok\n');
  if (url.pathname !== '/compress') return void res.writeHead(404).end();

  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort(); // the client went away before the answer
  });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmerge-server-'));
  try {
    const r = await compress(model, {
      k: Number(url.searchParams.get('k') ?? 2),
      calibration: path.join(model, 'calibration.txt'),
      calibrationTokens: 6144,
      out: path.join(work, 'merged'),
      signal: ac.signal,
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ window: r.windows[0].window, base: r.base.validation, merged: r.merged.validation, removed: r.params.removed }) + '\n');
  } catch (e) {
    console.error(`job ended: ${e.code}`);
    if (!res.headersSent && !res.destroyed) res.writeHead(e.code === 'ABORTED' ? 499 : 400).end(`${e.code}: ${e.message}\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

server.listen(Number(process.argv[2] ?? 0), () => console.log(`listening on ${server.address().port}`));
process.once('SIGTERM', () => server.close());
