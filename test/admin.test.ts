import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { ROOT } from './support/paths.js';
import { startServer, type RunningServer } from './support/server.js';

const TOKEN = 'test-admin-token-7f3a';
const rows = subsetRows({ train: 12, val: 4, test: 2 });

async function call(server: RunningServer, method: string, path: string, options: { token?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${server.url}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
}

/** A request with headers fetch() will not let us set (Host), as a browser on a rebound name or another page would send it. */
function raw(server: RunningServer, method: string, path: string, headers: Record<string, string>, body = ''): Promise<{ status: number; body: any }> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('admin routes opened on loopback (MARQUEE_ADMIN_OPEN_LOOPBACK=1)', () => {
  let open: RunningServer;
  let host: string;
  before(async () => {
    open = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: '', MARQUEE_ADMIN_OPEN_LOOPBACK: '1' });
    host = new URL(open.url).host;
  });
  after(async () => {
    await open.stop();
  });

  it('answer only a loopback Host, so a name rebound to 127.0.0.1 gets nothing', async () => {
    const port = new URL(open.url).port;
    for (const loopback of [host, `localhost:${port}`, `[::1]:${port}`, 'localhost']) {
      const ok = await raw(open, 'GET', '/admin/models', { host: loopback });
      assert.equal(ok.status, 200, loopback);
      assert.equal(ok.body.models.length, 1);
    }
    for (const foreign of [`rebound.example:${port}`, `127.0.0.1.rebound.example:${port}`, 'localhost.rebound.example']) {
      const refused = await raw(open, 'GET', '/admin/models', { host: foreign });
      assert.equal(refused.status, 403, foreign);
      assert.equal(refused.body.error.code, 'admin_host_refused');
    }
    // The public routes do not care: only the admin routes are opened without a token.
    assert.equal((await raw(open, 'GET', '/health', { host: `rebound.example:${port}` })).status, 200);
  });

  it('refuse another origin, and writes without X-Marquee-Admin (a cross-site form or text/plain post cannot send it)', async () => {
    const form = '--b\r\nContent-Disposition: form-data; name="id"\r\n\r\ncsrf-poster\r\n--b--\r\n';
    const multipart = { host, 'content-type': 'multipart/form-data; boundary=b' };
    for (const origin of ['http://evil.example', 'null', `http://localhost:1${new URL(open.url).port}`, `https://${host}.evil.example`]) {
      const refused = await raw(open, 'POST', '/admin/posters', { ...multipart, origin, 'x-marquee-admin': '1' }, form);
      assert.equal(refused.status, 403, origin);
      assert.equal(refused.body.error.code, 'admin_origin_refused');
      assert.equal((await raw(open, 'GET', '/admin/models', { host, origin })).status, 403, origin);
    }
    const noHeader = await raw(open, 'POST', '/admin/posters', multipart, form);
    assert.equal(noHeader.status, 403);
    assert.equal(noHeader.body.error.code, 'admin_header_required');
    const textPlain = await raw(open, 'POST', '/admin/models/base-nope/activate', { host, 'content-type': 'text/plain' }, '{}');
    assert.equal(textPlain.status, 403);
    assert.equal(textPlain.body.error.code, 'admin_header_required');
    assert.equal((await raw(open, 'DELETE', '/admin/posters/csrf-poster', { host })).body.error.code, 'admin_header_required');
    assert.equal((await raw(open, 'GET', '/posters/csrf-poster', { host })).status, 404);

    // This server's own pages, and tools that send the header, get through to the route.
    const ownPage = await raw(open, 'POST', '/admin/models/base-nope/activate', { host, origin: `http://${host}`, 'x-marquee-admin': '1' });
    assert.equal(ownPage.status, 404);
    assert.equal(ownPage.body.error.code, 'not_found');
    assert.equal((await raw(open, 'POST', '/admin/models/base-nope/activate', { host, 'x-marquee-admin': '1' })).status, 404);
  });
});

describe('admin routes', () => {
  let server: RunningServer;
  let closed: RunningServer;
  before(async () => {
    const catalog = makeCatalogDir(rows);
    server = await startServer({ MARQUEE_CATALOG: catalog, MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN });
    closed = await startServer({ MARQUEE_CATALOG: catalog, MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: '' });
  });
  after(async () => {
    await server.stop();
    await closed.stop();
  });

  it('need the bearer token', async () => {
    const none = await call(server, 'GET', '/admin/models');
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'unauthorized');
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal((await call(server, 'GET', '/admin/models', { token: 'wrong' })).status, 401);
    assert.equal((await call(server, 'GET', '/admin/models', { token: `${TOKEN}x` })).status, 401);
    assert.equal((await call(server, 'POST', '/admin/retrain', { body: {} })).status, 401);
    const ok = await call(server, 'GET', '/admin/models', { token: TOKEN });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.models.length, 1);
    assert.equal(ok.body.models[0].active, true);
    assert.equal(ok.body.active, ok.body.models[0].version);
  });

  it('stay shut without a token, and cannot be opened on a non-loopback address', async () => {
    const shut = await call(closed, 'GET', '/admin/jobs', { token: '' });
    assert.equal(shut.status, 403);
    assert.equal(shut.body.error.code, 'admin_disabled');
    const refused = spawnSync(process.execPath, [join(ROOT, 'bin', 'marquee.js'), 'serve'], {
      env: { ...process.env, HOST: '0.0.0.0', PORT: '0', MARQUEE_ADMIN_OPEN_LOOPBACK: '1', MARQUEE_ADMIN_TOKEN: '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /MARQUEE_ADMIN_OPEN_LOOPBACK=1 .* refused on HOST=0\.0\.0\.0/);
  });

  it('validate retrain parameters and answer 404 for unknown jobs and versions', async () => {
    for (const body of [{ epochs: 0 }, { mode: 'everything' }, { learning_rate: 1 }, { lr: -1 }]) {
      const bad = await call(server, 'POST', '/admin/retrain', { token: TOKEN, body });
      assert.equal(bad.status, 400, JSON.stringify(body));
      assert.equal(bad.body.error.code, 'invalid_request');
    }
    assert.deepEqual((await call(server, 'GET', '/admin/jobs', { token: TOKEN })).body, { jobs: [] });
    assert.equal((await call(server, 'GET', '/admin/jobs/job-nope', { token: TOKEN })).status, 404);
    assert.equal((await call(server, 'DELETE', '/admin/jobs/job-nope', { token: TOKEN })).status, 404);
    assert.equal((await call(server, 'POST', '/admin/models/base-nope/activate', { token: TOKEN })).status, 404);
  });
});
