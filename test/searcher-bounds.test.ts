// A filtered search through the graph is bounded: a broad filter whose posters lie far from the
// query switches to the exact scan rather than asking the graph for the whole catalog.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { seededRandom } from '../src/figures/random.js';
import { Searcher } from '../src/search/searcher.js';
import { VectorIndex } from '../src/search/vector-index.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import { registerVariantRows } from './support/model-rows.js';

const DIMS = 32;
const POSTERS = 3000;
const FAR = 400; // the posters of genre "Far", in a region of their own
const SPACE = { version: 'v-bounds', precision: 'fp32' } as const;

function unit(v: Float32Array): Float32Array {
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

/** POSTERS posters of DIMS dimensions in SQLite: the first FAR of genre "Far" around -e0, the others "Near" around +e0. */
function world() {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-bounds-'));
  const db = openDb(join(dir, 'marquee.db'));
  registerVariantRows(db, SPACE.version, DIMS);
  const catalog = new SqliteCatalog(db);
  const embeddings = new SqliteEmbeddingStore(db);
  const random = seededRandom(3);
  const vectors = new Map<number, Float32Array>();
  db.transaction(() => {
    for (let i = 0; i < POSTERS; i++) {
      const far = i < FAR;
      const { key } = catalog.upsertSync(
        { id: `p${i}`, title: null, year: null, releaseDate: null, genres: [far ? 'Far' : 'Near'], singleGenre: far ? 'Far' : 'Near', split: null, imagePath: 'x.jpg', imageSha256: 'x', pixelSha256: `p${i}`, width: 1, height: 1 },
        'now',
      );
      // Near posters around +e0, far ones around -e0.
      vectors.set(key, unit(Float32Array.from({ length: DIMS }, (_, d) => (d === 0 ? (far ? -4 : 4) : 0) + random() - 0.5)));
    }
  })();
  embeddings.putManySync(SPACE, [...vectors].map(([key, vector]) => ({ key, vector })));
  return { dir, db, catalog, embeddings, vectors };
}

describe('a filtered graph search', () => {
  it('asks the graph for at most its limit, then scans, and still answers exactly', async () => {
    const { dir, db, catalog, embeddings, vectors } = world();
    const index = VectorIndex.open(join(dir, 'indexes', 'v.usearch'), embeddings.source(SPACE, DIMS));
    const asked: number[] = [];
    const search = index.search.bind(index);
    index.search = (query, k) => (asked.push(k), search(query, k));
    // Far is 13 % of the catalog: over the scan limit of 50, so the graph is asked, over-fetching by its share.
    const searcher = new Searcher(index, (key) => embeddings.get(SPACE, key), catalog.filterFields(), (keys) => catalog.getMany(keys), 50, 700);

    const query = vectors.get(catalog.getSync(`p${FAR}`)!.key)!; // a near poster
    const k = 8;
    const hits = await searcher.search(query, k, { genre: 'Far' });
    assert.ok(asked.length > 0, 'the graph was asked first');
    assert.ok(Math.max(...asked) <= 700, `the graph was asked for ${asked.join(', ')}`);
    const exact = [...vectors]
      .filter(([key]) => catalog.getManySync([key]).get(key)!.genres[0] === 'Far')
      .map(([key, v]) => ({ key, distance: Math.hypot(...v.map((x, d) => x - query[d]!)) }))
      .sort((a, b) => a.distance - b.distance)
      .slice(0, k);
    assert.deepEqual(hits.map((h) => h.poster.key), exact.map((e) => e.key));
    db.close();
  });

  it('candidatesEach holds nearest\'s answer for each query, searching the graph for all at once, loaded or mapped', async () => {
    const { dir, db, catalog, embeddings, vectors } = world();
    const source = embeddings.source(SPACE, DIMS);
    const file = join(dir, 'indexes', 'v.usearch');
    const loaded = VectorIndex.open(file, source);
    const mapped = await VectorIndex.openWith(async (f, scalar) => void VectorIndex.writeBuilt(f, source, scalar), file, source);
    const keyOf = (i: number) => catalog.getSync(`p${i}`)!.key;
    const queries = [5, FAR + 1, FAR + 700, 2999].map((i) => vectors.get(keyOf(i))!);
    const exclude = new Set([keyOf(6), keyOf(FAR + 2)]);
    for (const [name, index] of [['loaded', loaded], ['mapped', mapped]] as const) {
      // Changes since the checkpoint: the mapped index holds them beside its file and merges both answers.
      index.remove(keyOf(4));
      index.add(keyOf(9), vectors.get(keyOf(FAR + 1))!);
      const batches: number[] = [];
      const searchMany = index.searchMany.bind(index);
      index.searchMany = (qs, k, threads) => (batches.push(qs.length), searchMany(qs, k, threads));
      // The graph, whose candidates are nearest's answer; and Far scanned whole (its 400 posters under
      // an exact-scan limit of 400), whose candidates are the coarse scan's best k + 8.
      const cases = [[{}, 50, true], [{ genre: 'Near' }, 50, true], [{ genre: 'Far' }, 50, true], [{ genre: 'Far' }, FAR, false]] as const;
      for (const [filter, exactScanLimit, graph] of cases) {
        const searcher = new Searcher(index, (key) => embeddings.get(SPACE, key), catalog.filterFields(), (keys) => catalog.getMany(keys), exactScanLimit, 700);
        const label = `${name} ${JSON.stringify(filter)} ${graph ? 'graph' : 'scan'}`;
        batches.length = 0;
        const each = searcher.candidatesEach(queries, 8, filter, exclude, 2);
        assert.deepEqual(batches, graph ? [queries.length] : [], `${label}: ${graph ? 'one search for the queries' : 'no graph search'}`);
        each.forEach((candidates, j) => {
          const nearest = searcher.nearest(queries[j]!, 8, filter, exclude).map((n) => n.key);
          if (graph) assert.deepEqual(candidates, nearest, `${label}, query ${j}`);
          else {
            assert.equal(candidates.length, 16, `${label}, query ${j}: k + 8`);
            assert.ok(nearest.every((key) => candidates.includes(key)), `${label}, query ${j}: nearest's 8 among them`);
          }
          assert.ok(candidates.every((key) => !exclude.has(key)), `${label}: none excluded`);
        });
      }
    }
    db.close();
  });
});
