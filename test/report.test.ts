import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, type RunningServer } from './support/server.js';
import { marquee } from './support/cli.js';

const TOKEN = 'test-admin-token-report';
const rows = subsetRows({ train: 30, val: 0, test: 8 });

describe('GET /admin/models/{version}/report', () => {
  let server: RunningServer;
  let version: string;
  const get = (path: string, token?: string) => fetch(`${server.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  before(async () => {
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN });
    version = ((await (await fetch(`${server.url}/ready`)).json()) as { model_version: string }).model_version;
  });
  after(async () => {
    await server?.stop();
  });

  it('needs the admin token', async () => {
    const response = await get(`/admin/models/${version}/report`);
    assert.equal(response.status, 401);
    assert.equal(((await response.json()) as any).error.code, 'unauthorized');
  });

  it('answers 404 before any evaluation, and for an unknown version', async () => {
    for (const path of [`/admin/models/${version}/report`, '/admin/models/base-nope/report']) {
      const response = await get(path, TOKEN);
      assert.equal(response.status, 404, path);
      const body = (await response.json()) as any;
      assert.equal(body.error.code, 'not_found');
      assert.equal(typeof body.error.message, 'string');
    }
  });

  it('serves what `marquee eval` wrote, as JSON and as Markdown, the latest run per version', async () => {
    const out = mkdtempSync(join(tmpdir(), 'marquee-report-'));
    const env = { MARQUEE_DATA_DIR: server.dataDir, MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_CATALOG: '' };
    const first = marquee(['eval', '--json', join(out, 'first.json'), '--out', join(out, 'first.md')], env);
    assert.equal(first.code, 0, first.stderr);

    const json = await get(`/admin/models/${version}/report`, TOKEN);
    assert.equal(json.status, 200);
    assert.match(json.headers.get('content-type') ?? '', /^application\/json/);
    const text = await json.text();
    assert.equal(text, readFileSync(join(out, 'first.json'), 'utf8'), 'byte for byte the --json output');
    assert.equal(JSON.parse(text).model_version, version);

    const md = await get(`/admin/models/${version}/report?format=md`, TOKEN);
    assert.equal(md.status, 200);
    assert.match(md.headers.get('content-type') ?? '', /^text\/markdown/);
    assert.equal(await md.text(), readFileSync(join(out, 'first.md'), 'utf8'));
    assert.equal((await get(`/admin/models/${version}/report?format=pdf`, TOKEN)).status, 400);

    const second = marquee(['eval', '--gallery', 'train+val', '--json', join(out, 'second.json'), '--out', join(out, 'second.md')], env);
    assert.equal(second.code, 0, second.stderr);
    const latest = await (await get(`/admin/models/${version}/report`, TOKEN)).text();
    assert.equal(latest, readFileSync(join(out, 'second.json'), 'utf8'));
    assert.notEqual(JSON.parse(latest).created_at, JSON.parse(text).created_at);
  });

  it('says when the catalog has changed since the evaluation', async () => {
    const current = await get(`/admin/models/${version}/report`, TOKEN);
    assert.equal(current.headers.get('x-catalog-stale'), 'false');
    assert.match(current.headers.get('x-catalog-fingerprint') ?? '', /^[0-9a-f]{64}$/);
    const patched = await fetch(`${server.url}/admin/posters/${rows[0]!.id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ genres: ['Western'] }),
    });
    assert.equal(patched.status, 200);
    assert.equal((await get(`/admin/models/${version}/report`, TOKEN)).headers.get('x-catalog-stale'), 'true');
  });
});
