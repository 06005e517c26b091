import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import createClient from 'openapi-fetch';
import type { paths } from '../openapi/marquee.js';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { ROOT } from './support/paths.js';
import { nearDuplicatesReady, startServer, type RunningServer } from './support/server.js';

const TOKEN = 'client-token';
const rows = subsetRows({ train: 30, val: 5, test: 5 });
const taken = new Set(rows.map((r) => r.id));
const [extra, batchOne, picture] = sharedRows().filter((r) => r.split === 'test' && !taken.has(r.id));
const contract = JSON.parse(readFileSync(join(ROOT, 'openapi', 'openapi.json'), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);

/** multipart/form-data from a body typed by the contract: the image as a file, the rest as fields. */
function formOf(body: Record<string, unknown>, image: Buffer): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(body)) {
    if (name === 'image') continue;
    for (const v of [value].flat()) form.append(name, String(v));
  }
  form.append('image', new Blob([new Uint8Array(image)], { type: 'image/jpeg' }), 'poster.jpg');
  return form;
}

describe('the committed OpenAPI contract', () => {
  it('lints clean with Redocly\'s recommended rules, and its TypeScript types are up to date', () => {
    const out = execFileSync(bin('redocly'), ['lint', 'openapi/openapi.json', '--format', 'json'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const totals = (JSON.parse(out) as { totals: { errors: number; warnings: number } }).totals;
    assert.deepEqual({ errors: totals.errors, warnings: totals.warnings }, { errors: 0, warnings: 0 });
    const generated = join(mkdtempSync(join(tmpdir(), 'marquee-types-')), 'marquee.d.ts');
    execFileSync(bin('openapi-typescript'), ['openapi/openapi.json', '-o', generated], { cwd: ROOT, stdio: 'ignore' });
    assert.equal(readFileSync(join(ROOT, 'openapi', 'marquee.d.ts'), 'utf8'), readFileSync(generated, 'utf8'), 'openapi/marquee.d.ts is stale: run `npm run openapi`');
  });
});

describe('a client generated from the contract drives every operation', () => {
  let server: RunningServer;
  let client: ReturnType<typeof createClient<paths>>;
  const called = new Set<string>();
  before(async () => {
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN });
    await nearDuplicatesReady(server.url);
    client = createClient<paths>({ baseUrl: server.url, headers: { authorization: `Bearer ${TOKEN}` } });
    client.use({ onRequest: ({ schemaPath, request }) => void called.add(`${request.method.toLowerCase()} ${schemaPath}`) });
  });
  after(async () => {
    await server.stop();
  });

  it('answers each one as the contract says, uploads included', async () => {
    const id = rows[2]!.id;
    const bytes = readFileSync(posterPath(id));
    const upload = { bodySerializer: () => formOf({}, bytes) };

    assert.equal((await client.GET('/health')).data?.status, 'ok');
    const ready = (await client.GET('/ready')).data!;
    assert.equal(ready.status, 'ready');
    assert.equal((await client.GET('/metrics', { parseAs: 'text' })).response.status, 200);
    const similar = (await client.POST('/posters/similar', { params: { query: { k: 3 } }, body: { image: '' }, ...upload })).data!;
    assert.equal(similar.catalog_match?.id, id);
    const genre = (await client.POST('/posters/genre', { params: { query: { k: 3 } }, body: { image: '' }, ...upload })).data!;
    assert.equal(genre.neighbors.length, 3);
    assert.equal((await client.POST('/posters/embed', { body: { image: '' }, ...upload })).data!.dims, 512);
    assert.equal((await client.GET('/posters', { params: { query: { limit: 5 } } })).data!.posters.length, 5);
    assert.equal((await client.GET('/posters/map')).data!.points.length, rows.length);
    assert.equal((await client.GET('/posters/{id}/similar', { params: { path: { id }, query: { k: 3 } } })).data!.results.length, 3);
    const recommended = (await client.POST('/posters/recommend', { body: { positive: [id], negative: [rows[3]!.id], k: 3, strategy: 'best_score' } })).data!;
    assert.equal(recommended.results.length, 3);
    assert.equal(recommended.positive[0]!.poster?.id, id);
    assert.ok((await client.GET('/posters', { params: { query: { q: rows[2]!.title, limit: 5 } } })).data!.posters.some((p) => p.id === id));
    assert.equal((await client.POST('/posters/near-duplicates', { body: { image: '' }, ...upload })).data!.near_duplicates[0]?.id, id);
    assert.deepEqual((await client.GET('/posters/{id}/near-duplicates', { params: { path: { id } } })).data!.near_duplicates, []);
    assert.equal((await client.GET('/posters/{id}/genre', { params: { path: { id } } })).data!.catalog_match?.id, id);
    assert.equal((await client.GET('/posters/{id}', { params: { path: { id } } })).data!.id, id);
    assert.equal((await client.GET('/posters/{id}/image', { params: { path: { id } }, parseAs: 'arrayBuffer' })).response.status, 200);

    const add = await client.POST('/admin/posters', {
      body: { image: '', id: extra!.id, genres: extra!.genres.split('|'), title: 'From the client', on_duplicate: 'flag' },
      bodySerializer: (body) => formOf(body as Record<string, unknown>, readFileSync(posterPath(extra!.id))),
    });
    assert.equal(add.response.status, 201, JSON.stringify(add.error));
    assert.equal(add.data!.title, 'From the client');
    assert.deepEqual(add.data!.near_duplicates, []);
    assert.deepEqual((await client.GET('/admin/duplicates', { params: { query: { limit: 5 } } })).data!.groups, []);
    const batch = await client.POST('/admin/posters/batch', {
      body: { posters: [{ id: batchOne!.id, genres: ['Drama'], image: readFileSync(posterPath(batchOne!.id)).toString('base64') }] },
    });
    assert.equal(batch.data!.results[0]!.status, 201);
    assert.deepEqual((await client.PATCH('/admin/posters/{id}', { params: { path: { id: extra!.id } }, body: { genres: ['Horror'] } })).data!.genres, ['Horror']);
    const put = await client.PUT('/admin/posters/{id}/image', {
      params: { path: { id: extra!.id } },
      body: { image: '' },
      bodySerializer: () => formOf({}, readFileSync(posterPath(picture!.id))),
    });
    assert.equal(put.response.status, 200);
    assert.equal((await client.DELETE('/admin/posters/{id}', { params: { path: { id: batchOne!.id } } })).response.status, 204);

    const models = (await client.GET('/admin/models')).data!;
    assert.equal((await client.POST('/admin/models/{version}/activate', { params: { path: { version: models.active! } } })).data!.active, true);
    const report = await client.GET('/admin/models/{version}/report', { params: { path: { version: models.active! } } });
    assert.equal(report.error?.error.code, 'not_found', 'no evaluation stored yet');
    const job = await client.POST('/admin/retrain', { body: { mode: 'head', epochs: 1000 } });
    assert.equal(job.response.status, 202);
    assert.equal((await client.GET('/admin/jobs')).data!.jobs[0]!.id, job.data!.id);
    assert.equal((await client.GET('/admin/jobs/{id}', { params: { path: { id: job.data!.id } } })).data!.id, job.data!.id);
    assert.equal((await client.DELETE('/admin/jobs/{id}', { params: { path: { id: job.data!.id } } })).response.status, 202);

    const operations = Object.entries(contract.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    assert.deepEqual(operations.filter((op) => !called.has(op)), [], 'every operation of the contract was called');
  });
});
