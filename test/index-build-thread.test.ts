// A server's index rebuild runs on a worker thread: the event loop keeps turning while it builds.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { seededRandom } from '../src/figures/random.js';
import { buildOnThread } from '../src/search/index-build.js';
import { VectorIndex } from '../src/search/vector-index.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import { registerVariantRows } from './support/model-rows.js';

const DIMS = 128;
const POSTERS = 8_000;
const SPACE = { version: 'v-build-thread', precision: 'fp32' } as const;

/** A real SQLite file with POSTERS synthetic posters and a random unit vector each. */
function world() {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-build-'));
  const db = openDb(join(dir, 'marquee.db'));
  registerVariantRows(db, SPACE.version, DIMS);
  const catalog = new SqliteCatalog(db);
  const embeddings = new SqliteEmbeddingStore(db);
  const random = seededRandom(7);
  const vectors: { key: number; vector: Float32Array }[] = [];
  db.transaction(() => {
    for (let i = 0; i < POSTERS; i++) {
      const { key } = catalog.upsertSync(
        { id: `p${i}`, title: null, year: null, releaseDate: null, genres: ['Drama'], singleGenre: 'Drama', split: null, imagePath: 'x.jpg', imageSha256: 'x', pixelSha256: `p${i}`, width: 1, height: 1 },
        'now',
      );
      const vector = Float32Array.from({ length: DIMS }, () => random() - 0.5);
      const norm = Math.hypot(...vector);
      vectors.push({ key, vector: vector.map((x) => x / norm) });
    }
  })();
  embeddings.putManySync(SPACE, vectors);
  return { db, embeddings, vectors, file: join(dir, 'indexes', `${SPACE.version}.usearch`) };
}

describe('an index rebuilt on a worker thread', () => {
  it('leaves the event loop turning, and its checkpoint is the index', async () => {
    const w = world();
    const source = w.embeddings.source(SPACE, DIMS);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the monitor times from its first tick: a stall before it goes unseen
    const started = performance.now();
    const index = await VectorIndex.openWith(buildOnThread({ dbFile: w.embeddings.dbFile }, SPACE, DIMS), w.file, source);
    const ms = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 50)); // and records a stall at its next tick
    delay.disable();
    const longest = delay.max / 1e6;
    assert.equal(index.rebuilt, 'missing');
    assert.equal(index.size, POSTERS);
    assert.ok(ms > 200, `the build took ${ms.toFixed(0)} ms: too little to tell`);
    // On a busy machine the loop waits for a core now and then; built on this thread, it stood still for all of it.
    assert.ok(longest < ms / 2, `the event loop stood still for ${longest.toFixed(0)} ms of a ${ms.toFixed(0)} ms build`);
    for (const { key, vector } of w.vectors.slice(0, 50)) assert.equal(index.search(vector, 1)[0]?.key, key);
    // The thread's checkpoint is what the next start loads, with nothing left to replay.
    const reopened = VectorIndex.open(w.file, source);
    assert.equal(reopened.rebuilt, null);
    assert.equal(reopened.replayed, 0);
    assert.equal(reopened.size, POSTERS);
    w.db.close();
  });
});
