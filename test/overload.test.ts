import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 20, val: 0, test: 0 });
let server: RunningServer;

describe('a bounded embedding queue', () => {
  before(async () => {
    server = await startServer({
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_QUEUE_MAX: '1',
      MARQUEE_BATCH_MAX_SIZE: '1',
      MARQUEE_BATCH_MAX_WAIT_MS: '0',
    });
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
  });

  it('answers 503 with Retry-After when full, serves the rest, and recovers', async () => {
    const bytes = readFileSync(posterPath(rows[0]!.id));
    const results = await Promise.all(Array.from({ length: 24 }, () => upload(`${server.url}/posters/similar?k=2`, bytes)));
    const refused = results.filter((r) => r.status === 503);
    const served = results.filter((r) => r.status === 200);
    assert.equal(refused.length + served.length, results.length, `statuses: ${results.map((r) => r.status)}`);
    assert.ok(refused.length > 0, 'some requests were refused');
    assert.ok(served.length >= 2, 'the queue still served requests');
    for (const r of refused) {
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal(r.body.error.code, 'overloaded');
    }
    const after = await upload(`${server.url}/posters/similar?k=2`, bytes);
    assert.equal(after.status, 200);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /marquee_http_requests_total\{route="\/posters\/similar",method="POST",status="503"\} [1-9]/);
  });
});
