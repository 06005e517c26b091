// The embedding map is a cached artefact: keyed by the catalog's change counter, of a sample past
// its cap, computed again at most once per interval, and a failed computation is remembered.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { CatalogMaps, mapPath, type MapOptions } from '../src/figures/map-cache.js';
import { seededRandom } from '../src/figures/random.js';
import { type NewPoster } from '../src/state/catalog.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb, type Db } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import type { ModelVersion } from '../src/state/models.js';
import { registerVariantRows } from './support/model-rows.js';

const DIMS = 16;
const VERSION = 'v-map';
const SPACE = { version: VERSION, precision: 'fp32' } as const;
const random = seededRandom(11);

function poster(i: number, genre = i % 2 ? 'Drama' : 'Comedy'): NewPoster {
  return { id: `p${i}`, title: `Poster ${i}`, year: null, releaseDate: null, genres: [genre], singleGenre: genre, split: null, imagePath: 'x.jpg', imageSha256: 'x', pixelSha256: `pixels-${i}`, width: 1, height: 1 };
}

function vector(): Float32Array {
  return Float32Array.from({ length: DIMS }, () => random() - 0.5);
}

function world(posters: number) {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-map-'));
  const db: Db = openDb(join(dir, 'marquee.db'));
  registerVariantRows(db, VERSION, DIMS);
  const catalog = new SqliteCatalog(db);
  const embeddings = new SqliteEmbeddingStore(db);
  const add = (i: number) => embeddings.putManySync(SPACE, [{ key: catalog.upsertSync(poster(i), 'now').key, vector: vector() }]);
  db.transaction(() => {
    for (let i = 0; i < posters; i++) add(i);
  })();
  // What the log says is what the maps did: one "computing" line per computation.
  const lines: string[] = [];
  const log = pino(
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)).msg);
        done();
      },
    }),
  );
  const maps = (options: MapOptions) => new CatalogMaps({ dataDir: dir, catalog, embeddings, log }, undefined, options);
  const computations = () => lines.filter((line) => line === 'computing the embedding map (UMAP)').length;
  return { dir, db, catalog, add, maps, computations };
}

const model = (dims = DIMS) => ({ version: VERSION, precision: 'fp32', dims }) as ModelVersion;

describe('the embedding map', () => {
  it('is sampled past its cap, cached by the change counter, and computed again at most once per interval', async () => {
    const w = world(240);
    const maps = w.maps({ cap: 100, intervalMs: 60_000 });
    const first = await maps.get(model());
    assert.equal(first.points.length, 100, 'a sample of the cap');
    assert.equal(first.catalogPosters, 240);
    assert.equal(new Set(first.points.map((p) => p.poster.id)).size, 100);
    assert.ok(first.points.every((p) => p.x >= 0 && p.x <= 1 && p.y >= 0 && p.y <= 1));
    assert.ok(existsSync(mapPath(w.dir, VERSION)));
    assert.equal(await maps.get(model()), first, 'the same map while nothing changes');

    // A new label: the points keep their places and take the poster's new genres.
    const relabelled = first.points[0]!.poster;
    w.catalog.upsertSync({ ...relabelled, genres: ['Western'], singleGenre: 'Western' }, 'now');
    const labels = await maps.get(model());
    assert.equal(labels.points.find((p) => p.poster.key === relabelled.key)?.poster.singleGenre, 'Western');
    assert.notEqual(labels.catalogFingerprint, first.catalogFingerprint);
    // A new poster, within the interval: the last map still, and no computation.
    w.add(240);
    const throttled = await maps.get(model());
    assert.deepEqual(throttled.points.map((p) => [p.x, p.y]), first.points.map((p) => [p.x, p.y]));
    assert.equal(w.computations(), 1);

    // Another process (a restart) reads the file, and computes it again in the background, the file served meanwhile.
    const restarted = w.maps({ cap: 100, intervalMs: 0 });
    const stale = await restarted.get(model());
    assert.equal(stale.cached, true);
    assert.deepEqual(stale.points.map((p) => [p.x, p.y]), first.points.map((p) => [p.x, p.y]));
    assert.equal(w.computations(), 2, 'one computation started');
    let fresh = stale;
    for (let tries = 0; fresh.cached && tries < 600; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      fresh = await restarted.get(model());
    }
    assert.equal(fresh.cached, false, 'the computed map replaced the file');
    assert.equal(fresh.catalogPosters, 241);
    assert.equal(w.computations(), 2);
    w.db.close();
  });

  it('remembers a failed computation instead of running it on every request', async () => {
    const w = world(30);
    const maps = w.maps({ failureMs: 60_000 });
    // A model whose dims are not its embeddings': the computation fails on its thread.
    await assert.rejects(maps.get(model(DIMS / 2 + 1)), (error: { statusCode: number; code: string; headers: Record<string, string> }) => {
      assert.equal(error.statusCode, 503);
      assert.equal(error.code, 'map_unavailable');
      assert.ok(Number(error.headers['retry-after']) > 0);
      return true;
    });
    await assert.rejects(maps.get(model(DIMS / 2 + 1)), { statusCode: 503, code: 'map_unavailable' });
    assert.equal(w.computations(), 1, 'not tried again');
    w.db.close();
  });

  it('the catalog fingerprint moves with what evaluations and labels depend on, not with titles', async () => {
    const w = world(5);
    const before = await w.catalog.fingerprint();
    const p = w.catalog.getSync('p1')!;
    w.catalog.upsertSync({ ...p, title: 'Renamed' }, 'now');
    assert.equal(await w.catalog.fingerprint(), before);
    w.catalog.upsertSync({ ...p, split: 'val' }, 'now');
    const split = await w.catalog.fingerprint();
    assert.notEqual(split, before);
    assert.equal(await new SqliteCatalog(w.db).fingerprint(), split);
    w.db.close();
  });
});
