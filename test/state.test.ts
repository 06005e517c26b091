// State is sealed in src/state: one place opens the database, and a write across tables is one method.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb, type Db } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import { SqlitePosterHashStore } from '../src/state/sqlite/poster-hashes.js';
import { State } from '../src/state/state.js';
import { registerVariantRows } from './support/model-rows.js';

const SRC = join(import.meta.dirname, '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

const poster = (id: string) => ({
  id, title: null, year: null, releaseDate: null, genres: ['Drama'], singleGenre: 'Drama', split: null,
  imagePath: `images/${id}.jpg`, imageSha256: 'a'.repeat(64), pixelSha256: `pixels-${id}`, width: 2, height: 3,
}); // prettier-ignore
const hash = { whole: '1'.repeat(64), trimmed: '2'.repeat(64), crop95: '3'.repeat(64), crop85: '4'.repeat(64) };

describe('state', () => {
  it('no module outside src/state holds a database handle, opens one, runs a transaction or names a storage backend', () => {
    const leaks: string[] = [];
    for (const file of sources(SRC)) {
      const path = relative(SRC, file);
      if (path.startsWith('state/')) continue;
      const text = readFileSync(file, 'utf8');
      if (/from '(?:\.\.?\/)+state\/sqlite\/|from 'better-sqlite3'|\.transaction\(/.test(text)) leaks.push(path);
    }
    assert.deepEqual(leaks, []);
    assert.ok(sources(SRC).length > 50, 'the scan saw the source tree');
  });

  it('savePoster writes the poster, its embedding and its hash together, or none of them', async () => {
    const state = State.inMemory();
    const unknownSpace = { version: 'no-such-model', precision: 'fp32' as const };
    await assert.rejects(() => state.savePoster(poster('p1'), 'now', { space: unknownSpace, vector: new Float32Array([1, 0]) }, hash));
    assert.equal(await state.catalog.get('p1'), null, 'the poster went with the embedding that could not be stored');
    assert.equal(await state.catalog.count(), 0);

    await state.catalog.upsert(poster('p2'), 'now');
    await state.catalog.delete('p2', 'now');
    assert.ok(await state.catalog.isDeleted('p2'));
    assert.equal(await state.catalog.importPoster(poster('p2'), 'now'), 'deleted', 'an import does not bring back a deleted poster');
    await state.close();
  });

  it('what a server lists or prunes a piece at a time is what one statement lists or prunes, across gaps in the keys', async () => {
    const fill = (db: Db) => {
      const catalog = new SqliteCatalog(db);
      const embeddings = new SqliteEmbeddingStore(db);
      const hashes = new SqlitePosterHashStore(db);
      const [space, other, gone] = [registerVariantRows(db, 'm1', 2), registerVariantRows(db, 'm2', 2), registerVariantRows(db, 'gone', 2)];
      const keys = Array.from({ length: 40 }, (_, i) => catalog.upsertSync(poster(`p${i}`), 'now').key);
      for (let i = 0; i < 40; i += 7) catalog.deleteSync(`p${i}`, 'now'); // gaps in the keys
      keys.forEach((key, i) => {
        if (i % 3 === 0 && i % 7 !== 0) embeddings.putManySync(space, [{ key, vector: new Float32Array([1, 0]) }]);
        if (i % 4 === 0 && i % 7 !== 0) hashes.write(key, i % 8 === 0 ? `pixels-p${i}` : 'a picture it no longer has', hash);
      });
      // More change-log rows than one piece of a prune, under each of three variants.
      for (let round = 0; round < 900; round++) {
        for (const s of [space, other, gone]) embeddings.putManySync(s, [{ key: keys[1]!, vector: new Float32Array([0, round]) }, { key: keys[2]!, vector: new Float32Array([round, 0]) }, { key: keys[3]!, vector: new Float32Array([1, 1]) }]);
      }
      db.prepare("DELETE FROM model_versions WHERE version = 'gone'").run();
      return { catalog, embeddings, hashes, space, other };
    };
    const [a, b] = [openDb(':memory:'), openDb(':memory:')];
    const [one, paged] = [fill(a), fill(b)];

    const expectedToEmbed = one.catalog.allSync().filter((p) => one.embeddings.getSync(one.space, p.key) === null).map((p) => p.key);
    assert.deepEqual(one.embeddings.missingSync(one.space).map((p) => p.key), expectedToEmbed);
    const hashed = new Set<number>();
    for await (const { key } of one.hashes.current()) hashed.add(key);
    const expectedToHash = one.catalog.allSync().map((p) => p.key).filter((key) => !hashed.has(key));
    assert.ok(expectedToEmbed.length > 10 && expectedToHash.length > 10 && expectedToHash.length < (await one.catalog.count()));
    for (const pageSize of [1, 3, 10, 1000]) {
      assert.deepEqual(await one.embeddings.missingInPages(one.space, pageSize), one.embeddings.missingSync(one.space), `embeddings, pages of ${pageSize}`);
      assert.deepEqual((await one.hashes.missing(pageSize)).map((p) => p.key), expectedToHash, `hashes, pages of ${pageSize}`);
    }

    const logOf = (db: Db) => db.prepare('SELECT model_version, seq FROM embedding_changes ORDER BY seq').all() as { model_version: string; seq: number }[];
    const upTo = logOf(a).filter((r) => r.model_version === 'm1')[1500]!.seq;
    one.embeddings.pruneChanges(one.space, upTo);
    await paged.embeddings.pruneChangesInPieces(paged.space, upTo);
    const left = logOf(b);
    assert.deepEqual(left, logOf(a));
    assert.ok(!left.some((r) => r.model_version === 'gone'), "a gone variant's log is forgotten");
    assert.ok(!left.some((r) => r.model_version === 'm1' && r.seq <= upTo));
    assert.ok(left.some((r) => r.model_version === 'm1' && r.seq > upTo));
    assert.equal(left.filter((r) => r.model_version === 'm2').length, 2700, "another variant's log is kept whole");
    assert.equal(paged.embeddings.prunedThrough(paged.space), upTo);
    a.close();
    b.close();
  });

  it('two connections writing one database at once both finish: a write never meets "database is locked"', async () => {
    // A transaction that reads before it writes must take the write lock first: in WAL mode a reader
    // whose snapshot another connection has since written past cannot upgrade, and SQLite answers
    // SQLITE_BUSY at once, without waiting on the busy timeout (CI saw it: an import beside a server).
    const dir = mkdtempSync(join(tmpdir(), 'marquee-writers-'));
    await State.open(dir).close();
    // Both start together (a barrier on shared memory), and every iteration writes: an upsert that adds
    // (read, then write) and a delete that removes (read, then write), each checked.
    const gate = new SharedArrayBuffer(4);
    const writer = (name: string) =>
      new Promise<string>((resolve, reject) => {
        const posters = Array.from({ length: 50 }, (_, i) => poster(`${name}-${i}`));
        const worker = new Worker(
          `const { workerData, parentPort } = require('node:worker_threads');
           import(workerData.module).then(async ({ State }) => {
             const state = State.open(workerData.dir);
             const { posters } = workerData;
             const gate = new Int32Array(workerData.gate);
             Atomics.add(gate, 0, 1);
             Atomics.notify(gate, 0);
             while (Atomics.load(gate, 0) < 2) Atomics.wait(gate, 0, 1, 100);
             try {
               for (let i = 0; i < 1500; i++) {
                 const p = posters[i % 50];
                 const { change } = await state.catalog.upsert(p, 'now');
                 if (change !== 'added') throw new Error('upsert ' + i + ': ' + change);
                 if (!(await state.catalog.delete(p.id, 'now'))) throw new Error('delete ' + i + ': not found');
               }
               parentPort.postMessage('done');
             } catch (error) {
               parentPort.postMessage(String(error));
             } finally {
               await state.close();
             }
           });`,
          { eval: true, workerData: { module: new URL('../dist/state/state.js', import.meta.url).href, dir, posters, gate } },
        );
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    try {
      assert.deepEqual(await Promise.all([writer('a'), writer('b')]), ['done', 'done']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
