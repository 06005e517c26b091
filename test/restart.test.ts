import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { adminRequest, startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 40, val: 0, test: 0 });
const TOKEN = 'restart-token';
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

function indexLog(logs: string): { rebuilt: boolean; replayed: number; vectors: number } {
  const line = logs.split('\n').find((l) => l.includes('"msg":"vector index ready"'));
  assert.ok(line, 'the index was loaded');
  return JSON.parse(line) as { rebuilt: boolean; replayed: number; vectors: number };
}

async function addPoster(server: RunningServer, id: string): Promise<number> {
  const form = new FormData();
  form.append('id', id);
  form.append('genres', 'Drama');
  form.append('image', new Blob([new Uint8Array(readFileSync(posterPath(id)))], { type: 'image/jpeg' }), 'poster.jpg');
  const response = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
  return response.status;
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

  it('live changes reach the next start by replaying the change log, not by rebuilding, even after a SIGKILL', async () => {
    const env = {
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')),
      MARQUEE_ADMIN_TOKEN: TOKEN,
    };
    const taken = new Set(rows.map((r) => r.id));
    const [added, addedLater] = sharedRows().filter((r) => r.split === 'test' && !taken.has(r.id));
    const first = await start(env);
    assert.equal(await addPoster(first, added!.id), 201);
    assert.equal((await adminRequest(first.url, TOKEN, 'DELETE', `/admin/posters/${rows[0]!.id}`)).status, 204);
    assert.equal(await first.stop(), 0);

    const second = await start(env);
    const log = indexLog(second.logs());
    assert.equal(log.rebuilt, false);
    assert.equal(log.replayed, 2, 'the added and the deleted poster');
    assert.equal(log.vectors, rows.length);
    const ids = async (server: RunningServer, id: string) =>
      (await neighbours(server, readFileSync(posterPath(id)))).map(([hit]: [string]) => hit);
    assert.equal((await ids(second, added!.id))[0], added!.id);
    assert.ok(!(await ids(second, rows[0]!.id)).includes(rows[0]!.id), 'the deleted poster is gone');
    assert.equal(await addPoster(second, addedLater!.id), 201);
    const killed = new Promise((resolve) => second.child.once('exit', resolve));
    second.child.kill('SIGKILL');
    await killed;

    const third = await start(env);
    const after = indexLog(third.logs());
    assert.equal(after.rebuilt, false);
    // A server keeps what it replays beside its mapped graph (and in the log) until the next build.
    assert.equal(after.replayed, 3, 'every change since the build: the two before the last start and the poster added after it');
    assert.equal(after.vectors, rows.length + 1);
    assert.equal((await ids(third, addedLater!.id))[0], addedLater!.id);
    assert.equal(await third.stop(), 0);
  });
});
