import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
