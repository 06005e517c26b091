import { Searcher } from '../../src/search/searcher.js';
import { VectorIndex } from '../../src/search/vector-index.js';
import { indexPath } from '../../src/service/engine.js';
import type { EmbeddingSet } from '../../src/state/embeddings.js';
import type { BenchContext } from '../lib/context.js';
import { nowMs, ratio, summarise, type Summary } from '../lib/stats.js';

export const K = 8;

export interface SearchRow {
  method: 'exact-scan' | 'hnsw' | 'searcher';
  description: string;
  /** Latency per query, ms. */
  latency: Summary;
  queriesPerS: number;
  /** p50 / exact-scan p50. */
  p50RatioVsExact: number;
  otherCpuShare: number;
  attempts: number;
}

export interface SearchResult {
  indexFile: string;
  indexRebuilt: boolean;
  vectors: number;
  dims: number;
  queries: number;
  passes: number;
  k: number;
  rows: SearchRow[];
  /** Mean over queries of |HNSW top-k ∩ exact top-k| / k (by poster key). */
  recallAtK: number;
  /** Same, counting an HNSW hit as correct when its distance is within 1e-6 of the exact k-th distance (ties). */
  recallAtKDistance: number;
  /** Queries whose own poster came back first from HNSW. */
  selfFirst: number;
}

/** Exact k-NN by scanning every vector (squared L2, as the index's metric), top-k kept by insertion. */
export function exactSearch(set: EmbeddingSet, query: Float32Array, k: number): { keys: number[]; distances: number[] } {
  const { keys, vectors, dims } = set;
  const bestD: number[] = [];
  const bestI: number[] = [];
  for (let i = 0, off = 0; i < keys.length; i++, off += dims) {
    let sum = 0;
    for (let d = 0; d < dims; d++) {
      const diff = vectors[off + d]! - query[d]!;
      sum += diff * diff;
    }
    if (bestD.length < k || sum < bestD[bestD.length - 1]!) {
      let pos = bestD.length;
      while (pos > 0 && bestD[pos - 1]! > sum) pos--;
      bestD.splice(pos, 0, sum);
      bestI.splice(pos, 0, i);
      if (bestD.length > k) {
        bestD.pop();
        bestI.pop();
      }
    }
  }
  return { keys: bestI.map((i) => Number(keys[i])), distances: bestD.map((d) => Math.sqrt(d)) };
}

/** Section (c): k=8 search on the real active-version index vs an exact scan, with recall. */
export async function benchSearch(ctx: BenchContext, progress: (line: string) => void): Promise<SearchResult> {
  const { model } = ctx;
  const set = await ctx.embeddings.load(model, model.dims);
  const file = indexPath(ctx.dataDir, model);
  const index = VectorIndex.open(file, ctx.embeddings.source(model, model.dims), {
    onRebuild: (reason) => progress(`index ${file} is ${reason}: rebuilding it (not timed)`),
  });
  const rowOf = new Map<number, number>();
  set.keys.forEach((key, i) => rowOf.set(Number(key), i));
  const queries: { key: number; vector: Float32Array }[] = [];
  for (const poster of ctx.testPosters) {
    const row = rowOf.get(poster.key);
    if (row !== undefined) queries.push({ key: poster.key, vector: set.vectors.slice(row * set.dims, (row + 1) * set.dims) });
  }
  const searcher = new Searcher(index, (key) => ctx.embeddings.get(model, key), ctx.catalog.filterFields(), (keys) => ctx.catalog.getMany(keys));
  const passes = ctx.quick ? 1 : 3;

  // Correctness first (also warms caches): recall of HNSW against the exact answer.
  let recall = 0;
  let recallDistance = 0;
  let selfFirst = 0;
  for (const q of queries) {
    const exact = exactSearch(set, q.vector, K);
    const approx = index.search(q.vector, K);
    const truth = new Set(exact.keys);
    const kth = exact.distances[exact.distances.length - 1]!;
    recall += approx.filter((n) => truth.has(n.key)).length / K;
    recallDistance += approx.filter((n) => truth.has(n.key) || n.distance <= kth + 1e-6).length / K;
    if (approx[0]?.key === q.key) selfFirst++;
  }

  const time = (fn: (q: Float32Array) => unknown): Summary => {
    for (const q of queries.slice(0, 50)) fn(q.vector);
    const samples: number[] = [];
    for (let pass = 0; pass < passes; pass++) {
      for (const q of queries) {
        const t0 = nowMs();
        fn(q.vector);
        samples.push(nowMs() - t0);
      }
    }
    return summarise(samples);
  };
  const rows: SearchRow[] = [];
  const add = async (method: SearchRow['method'], description: string, fn: (q: Float32Array) => unknown) => {
    const run = await ctx.monitor.clean(method, async () => time(fn), {}, (i) =>
      progress(`${method}: other processes used ${(100 * i.shareOfMachine).toFixed(0)}% of the machine; measuring again`),
    );
    const latency = run.value;
    const exactP50 = rows[0]?.latency.median ?? latency.median;
    rows.push({
      method,
      description,
      latency,
      queriesPerS: 1000 / latency.mean,
      p50RatioVsExact: ratio(latency.median, exactP50),
      otherCpuShare: run.interference.shareOfMachine,
      attempts: run.attempts,
    });
    progress(`${method.padEnd(10)} p50 ${latency.median.toFixed(3)} ms, p99 ${latency.p99.toFixed(3)} ms (${latency.reps} queries)`);
  };
  await add('exact-scan', `brute force over all ${set.keys.length} vectors, same process (baseline)`, (q) => exactSearch(set, q, K));
  await add('hnsw', 'VectorIndex.search (usearch HNSW, in memory)', (q) => index.search(q, K));
  await add('searcher', 'Searcher.search, no filter (what the route calls: index + poster lookup)', (q) => searcher.search(q, K));

  return {
    indexFile: file,
    indexRebuilt: index.rebuilt !== null,
    vectors: index.size,
    dims: index.dims,
    queries: queries.length,
    passes,
    k: K,
    rows,
    recallAtK: recall / queries.length,
    recallAtKDistance: recallDistance / queries.length,
    selfFirst,
  };
}
