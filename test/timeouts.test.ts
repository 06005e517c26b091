// Slow clients are cut off: a request whose headers, or headers and body, do not arrive within
// MARQUEE_HEADERS_TIMEOUT_MS / MARQUEE_REQUEST_TIMEOUT_MS gets 408 in the one error shape and its
// connection is closed (counted in /metrics); an idle keep-alive connection is closed after
// MARQUEE_KEEP_ALIVE_TIMEOUT_MS; ordinary requests beside them are served. A request whose work
// outlasts MARQUEE_CONNECTION_TIMEOUT_MS (an activation) keeps its connection until it is answered.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { otherTestModelDir, testModelDir } from './support/model.js';
import { adminRequest, startServer, upload, type RunningServer } from './support/server.js';

const REQUEST_TIMEOUT_MS = 2000;
const HEADERS_TIMEOUT_MS = 1000;
const KEEP_ALIVE_TIMEOUT_MS = 1500;
// Node looks for expired requests every headers timeout / 4 here; the rest is a loaded machine's slack.
const SLACK_MS = HEADERS_TIMEOUT_MS / 4 + 1500;
const rows = subsetRows({ train: 12, val: 0, test: 0 });

/**
 * A raw connection that sends `head` at once, then one byte of `trickle` every `everyMs` until the
 * server closes it (or `giveUpMs` passes): when it was closed, and what the server answered.
 */
function slowClient(server: RunningServer, head: string, trickle: string, everyMs: number, giveUpMs = 20_000) {
  const url = new URL(server.url);
  return new Promise<{ closedAfterMs: number; answer: string }>((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let answer = '';
    let started = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => {});
    socket.on('connect', () => {
      started = performance.now();
      socket.write(head);
      let i = 0;
      timer = setInterval(() => {
        if (performance.now() - started > giveUpMs) socket.destroy();
        else if (!socket.destroyed) socket.write(trickle[i++ % trickle.length]!);
      }, everyMs);
    });
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ closedAfterMs: performance.now() - started, answer });
    });
  });
}

describe('timeouts', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      MARQUEE_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      MARQUEE_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('cut off an upload whose body trickles in, with 408, while an ordinary upload beside it is served', async () => {
    const host = new URL(server.url).host;
    const part = '--b\r\nContent-Disposition: form-data; name="image"; filename="poster.jpg"\r\nContent-Type: image/jpeg\r\n\r\n';
    const slow = slowClient(
      server,
      `POST /posters/similar?k=3 HTTP/1.1\r\nHost: ${host}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n${part}`,
      readFileSync(posterPath(rows[0]!.id)).toString('latin1'),
      250,
    );
    const ordinary = await upload(`${server.url}/posters/similar?k=3`, readFileSync(posterPath(rows[1]!.id)));
    assert.equal(ordinary.status, 200);
    assert.equal(ordinary.body.catalog_match.id, rows[1]!.id);

    const { closedAfterMs, answer } = await slow;
    assert.ok(closedAfterMs >= REQUEST_TIMEOUT_MS - 100, `closed after ${closedAfterMs.toFixed(0)} ms, before the timeout`);
    assert.ok(closedAfterMs <= REQUEST_TIMEOUT_MS + SLACK_MS, `closed after ${closedAfterMs.toFixed(0)} ms (timeout ${REQUEST_TIMEOUT_MS} ms)`);
    assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.deepEqual(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code, 'request_timeout');
  });

  it('cut off a client whose headers trickle in, and close an idle keep-alive connection', async () => {
    const host = new URL(server.url).host;
    const headers = await slowClient(server, `GET /health HTTP/1.1\r\nHost: ${host}\r\n`, 'X-Slow: abcdefgh\r\n', 100);
    assert.ok(headers.closedAfterMs <= HEADERS_TIMEOUT_MS + SLACK_MS, `closed after ${headers.closedAfterMs.toFixed(0)} ms (headers timeout ${HEADERS_TIMEOUT_MS} ms)`);
    assert.match(headers.answer, /^HTTP\/1\.1 408 /);

    // One request, answered, then nothing: the connection is closed when the keep-alive timeout passes.
    const idle = await slowClient(server, `GET /health HTTP/1.1\r\nHost: ${host}\r\n\r\n`, '', 60_000);
    assert.match(idle.answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(idle.closedAfterMs >= KEEP_ALIVE_TIMEOUT_MS - 100 && idle.closedAfterMs <= KEEP_ALIVE_TIMEOUT_MS + SLACK_MS, `closed after ${idle.closedAfterMs.toFixed(0)} ms`);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^marquee_http_request_timeouts_total 2$/m);
  });
});

describe('a request whose work outlasts the idle connection timeout', () => {
  const IDLE_MS = 300;
  const TOKEN = 'timeouts-token';
  let server: RunningServer | undefined;
  after(async () => {
    await server?.stop();
  });

  it('keeps its connection until it is answered: an activation that embeds the catalog', async () => {
    const env = { MARQUEE_CATALOG: makeCatalogDir(subsetRows({ train: 150, val: 0, test: 0 })), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
    const first = await startServer(env);
    await first.stop();
    const added = marquee(['models', 'add', otherTestModelDir()], { MARQUEE_DATA_DIR: first.dataDir, MARQUEE_CATALOG: '' });
    assert.equal(added.code, 0, added.stderr);
    const version = (JSON.parse(added.stdout) as { model_version: string }).model_version;
    server = await startServer({ ...env, MARQUEE_DATA_DIR: first.dataDir, MARQUEE_CONNECTION_TIMEOUT_MS: String(IDLE_MS) });

    const started = performance.now();
    const activated = await adminRequest(server.url, TOKEN, 'POST', `/admin/models/${version}/activate`);
    const took = performance.now() - started;
    assert.equal(activated.status, 200, JSON.stringify(activated.body));
    assert.ok(took > 2 * IDLE_MS, `the activation took ${took.toFixed(0)} ms, not past the idle timeout: the test proves nothing`);
    assert.equal(((await (await fetch(`${server.url}/ready`)).json()) as { model_version: string }).model_version, version);
  });
});
