// The graph walk (src/search/native/graph-walk.cc): searches of a usearch graph file for several
// queries at once, their walks taking turns on one thread or split over two. Over the shipped
// model's embeddings of the demo catalog's 7,198 real posters, in graph files usearch writes,
// against usearch's own search and against scoring every poster.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { LoadedGraph, MappedGraph, newUsearchIndex, type IndexScalar } from '../src/search/graph.js';
import { graphWalkUnavailable, openGraphWalk, type GraphWalk } from '../src/search/graph-walk.js';
import { readCatalogEmbeddingsHeader } from '../src/model/catalog-embeddings-file.js';
import { seededRandom } from '../src/figures/random.js';
import { ROOT } from './support/paths.js';

const SHIPPED = join(ROOT, 'models', 'default', 'catalog-embeddings.bin');

/** The shipped embeddings, one row per poster (the file ends with them: marquee-catalog-embeddings/1). */
function shippedVectors(): { dims: number; count: number; all: Float32Array } {
  const { dims, count } = readCatalogEmbeddingsHeader(SHIPPED);
  const bytes = readFileSync(SHIPPED);
  const all = new Float32Array(Uint8Array.prototype.slice.call(bytes, bytes.length - count * dims * 4).buffer);
  return { dims, count, all };
}

const KEY_BASE = 100n; // keys that are not slots, so that a slot answered as a key shows

describe('the graph walk: searches of a graph file for several queries at once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-walk-'));
  const { dims, count, all } = shippedVectors();
  const row = (i: number) => all.subarray(i * dims, (i + 1) * dims);
  const keyOf = (i: number) => KEY_BASE + BigInt(i);
  const files = {} as Record<IndexScalar, string>;

  before(() => {
    const keys = BigUint64Array.from({ length: count }, (_, i) => keyOf(i));
    for (const scalar of ['f32', 'f16', 'i8'] as const) {
      const index = newUsearchIndex(dims, scalar);
      index.add(keys, all, 0);
      files[scalar] = join(dir, `${scalar}.usearch`);
      index.save(files[scalar]);
    }
  });

  const pack = (queries: Float32Array[]) => {
    const packed = new Float32Array(queries.length * dims);
    queries.forEach((q, i) => packed.set(q, i * dims));
    return packed;
  };
  /** Query j's answer from searchEach's arrays. */
  const answer = (result: ReturnType<GraphWalk['searchEach']>, j: number, k: number) => {
    const [keys, distances, counts] = result;
    return { keys: Array.from(keys.subarray(j * k, j * k + counts[j]!)), distances: Array.from(distances.subarray(j * k, j * k + counts[j]!)) };
  };
  /** The k nearest by scoring every poster: keys and squared distances. */
  const exact = (query: Float32Array, k: number) => {
    const scored: { key: bigint; d: number }[] = [];
    for (let i = 0; i < count; i++) {
      const v = row(i);
      let d = 0;
      for (let j = 0; j < dims; j++) d += (v[j]! - query[j]!) ** 2;
      scored.push({ key: keyOf(i), d });
    }
    return scored.sort((a, b) => a.d - b.d).slice(0, k);
  };
  const open = (scalar: IndexScalar): GraphWalk => {
    const walk = openGraphWalk(files[scalar]);
    assert.ok(walk, `the graph walk is built (npm install: scripts/build-native.mjs): ${graphWalkUnavailable}`);
    return walk;
  };

  it('npm install built it, and it reads f32 and f16 graph files', () => {
    for (const scalar of ['f32', 'f16'] as const) assert.equal(open(scalar).size(), count, scalar);
  });

  it("answers each of several queries as usearch's own search does, on one thread or two, at exact distances (f32) or within f16's rounding", () => {
    const random = seededRandom(3);
    for (const scalar of ['f32', 'f16'] as const) {
      const walk = open(scalar);
      const index = newUsearchIndex(dims, scalar);
      index.view(files[scalar]);
      let same = 0;
      let asked = 0;
      for (let t = 0; t < 30; t++) {
        const picks = Array.from({ length: 1 + (t % 6) }, () => Math.floor(random() * count)); // 1 to 6 queries: one group of walks or two
        const queries = picks.map(row);
        const one = walk.searchEach(pack(queries), 10, 64, 1);
        const two = walk.searchEach(pack(queries), 10, 64, 2);
        assert.deepEqual(two, one, `${scalar}: the same answers on two threads as on one`);
        queries.forEach((query, j) => {
          const ours = answer(one, j, 10);
          const theirs = index.search(query, 64, 1);
          assert.equal(ours.keys.length, 10);
          assert.equal(ours.keys[0], keyOf(picks[j]!), `${scalar}: a catalog poster's own vector finds it first`);
          for (let i = 1; i < ours.distances.length; i++) assert.ok(ours.distances[i]! >= ours.distances[i - 1]!, 'nearest first');
          const wanted = new Set(Array.from(theirs.keys.subarray(0, 10)));
          same += ours.keys.filter((key) => wanted.has(key)).length;
          asked += 10;
          const second = exact(query, 2)[1]!;
          const at = ours.keys.indexOf(second.key);
          if (at >= 0) assert.ok(Math.abs(ours.distances[at]! - second.d) < (scalar === 'f32' ? 1e-4 : 2e-3), `${scalar}: ${ours.distances[at]} against ${second.d}`);
        });
      }
      assert.ok(same / asked >= 0.98, `${scalar}: ${same} of ${asked} as usearch's own search`);
    }
  });

  it('finds what scoring every poster finds', () => {
    const random = seededRandom(5);
    const walk = open('f32');
    let found = 0;
    for (let t = 0; t < 20; t++) {
      const queries = [0, 1, 2].map(() => row(Math.floor(random() * count)));
      const result = walk.searchEach(pack(queries), 10, 64, 2);
      queries.forEach((query, j) => {
        const wanted = new Set(exact(query, 10).map((e) => e.key));
        found += answer(result, j, 10).keys.filter((key) => wanted.has(key)).length;
      });
    }
    assert.ok(found / 600 >= 0.97, `recall@10 ${found / 600}`);
  });

  it('walks through a removed poster without answering it', () => {
    const index = newUsearchIndex(dims, 'f32');
    index.load(files.f32);
    const removed = new Set<bigint>();
    for (let i = 0; i < count; i += 3) (index.remove(keyOf(i)), removed.add(keyOf(i)));
    const file = join(dir, 'removed.usearch');
    index.save(file);
    const walk = openGraphWalk(file)!;
    const random = seededRandom(7);
    for (let t = 0; t < 30; t++) {
      const queries = [0, 1].map(() => row(3 * Math.floor((random() * count) / 3))); // removed posters' own vectors
      const result = walk.searchEach(pack(queries), 20, 64);
      for (const j of [0, 1]) {
        const { keys } = answer(result, j, 20);
        assert.equal(keys.length, 20, 'a removed poster takes no place among the nearest');
        for (const key of keys) assert.ok(key >= KEY_BASE && key < keyOf(count) && !removed.has(key), `removed poster ${key} answered`);
      }
    }
  });

  it('refuses files it cannot read, saying why, and queries of the wrong length', () => {
    const refused = (file: string, why: RegExp) => {
      assert.equal(openGraphWalk(file), null, file);
      assert.match(graphWalkUnavailable ?? '', why);
      open('f32'); // a file it reads clears the reason
      assert.equal(graphWalkUnavailable, null);
    };
    refused(files.i8, /neither f32 nor f16/);
    const junk = join(dir, 'junk.usearch');
    writeFileSync(junk, Buffer.alloc(4096, 7));
    refused(junk, /not a usearch file/);
    refused(join(dir, 'missing.usearch'), /missing\.usearch/);
    const walk = open('f32');
    assert.throws(() => walk.searchEach(new Float32Array(dims + 1), 5, 16), /whole queries/);
    assert.throws(() => (walk.searchEach as (...a: unknown[]) => unknown)(pack([row(0)]), 5), /expects/);
  });

  it('a mapped graph searches its file by the walk, leaving out posters removed since and adding those added, as a graph read whole answers', () => {
    const mapped = MappedGraph.view(files.f32, dims, 'f32');
    const index = newUsearchIndex(dims, 'f32');
    index.load(files.f32);
    const loaded = new LoadedGraph(index);
    const random = seededRandom(11);
    for (let t = 0; t < 20; t++) {
      const picks = [0, 1, 2].map(() => Math.floor(random() * count));
      const queries = picks.map(row);
      for (const graph of [mapped, loaded]) {
        graph.remove(keyOf(picks[0]!));
        graph.put(1_000_000n + BigInt(t), queries[1]!.map((x, j) => x + (j === 0 ? 1e-3 : 0)));
      }
      const ours = mapped.searchMany(queries, 64, 2);
      const theirs = loaded.searchMany(queries, 64, 2);
      assert.ok(!Array.from(ours[0]!.keys).includes(keyOf(picks[0]!)), 'a poster removed since the file is not answered');
      assert.equal(ours[1]!.keys[1], 1_000_000n + BigInt(t), 'a poster added since the file is found');
      for (const j of [0, 1, 2]) {
        const wanted = new Set(Array.from(theirs[j]!.keys).slice(0, 10));
        assert.ok(Array.from(ours[j]!.keys).slice(0, 10).filter((key) => wanted.has(key)).length >= 9, `query ${j}: as the graph read whole`);
      }
    }
  });
});
