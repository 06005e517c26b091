import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 40, val: 0, test: 0 });
const started: RunningServer[] = [];

async function start(env: Record<string, string>): Promise<RunningServer> {
  const server = await startServer(env);
  started.push(server);
  return server;
}

async function neighbours(server: RunningServer, query: Buffer) {
  const { body } = await upload(`${server.url}/posters/similar?k=5`, query);
  return body.results.map((r: { id: string; distance: number }) => [r.id, r.distance]);
}

function indexLog(logs: string): { rebuilt: boolean } {
  const line = logs.split('\n').find((l) => l.includes('"msg":"vector index ready"'));
  assert.ok(line, 'the index was loaded');
  return JSON.parse(line) as { rebuilt: boolean };
}

describe('restarts reuse what is stored', () => {
  after(async () => {
    for (const server of started) await server.stop();
  });

  it('a second start reuses embeddings and the index, answers the same, and rebuilds a corrupt index', async () => {
    const env = { MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')) };
    const query = readFileSync(posterPath(rows[1]!.id));

    const first = await start(env);
    assert.equal(indexLog(first.logs()).rebuilt, true);
    assert.match(first.logs(), /"msg":"embedding the catalog"/);
    const before = await neighbours(first, query);
    assert.equal(await first.stop(), 0);

    const second = await start(env);
    assert.equal(indexLog(second.logs()).rebuilt, false);
    assert.doesNotMatch(second.logs(), /"msg":"embedding the catalog"/);
    assert.deepEqual(await neighbours(second, query), before);
    assert.equal(await second.stop(), 0);

    const indexes = join(env.MARQUEE_DATA_DIR, 'indexes');
    const file = readdirSync(indexes).find((f) => f.endsWith('.usearch'))!;
    writeFileSync(join(indexes, file), 'not an index');
    const third = await start(env);
    assert.equal(indexLog(third.logs()).rebuilt, true);
    assert.match(third.logs(), /"reason":"corrupt"/);
    assert.deepEqual(await neighbours(third, query), before);
    assert.equal(await third.stop(), 0);
  });
});
