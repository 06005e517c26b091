import type { EmbeddingSet } from '../state/embeddings.js';

/** Row-major unit vectors, each with the poster key it belongs to (-1: a query from outside the catalog). */
export interface KeyedVectors {
  keys: Int32Array;
  data: Float32Array;
  dims: number;
}

/** The k nearest gallery rows of each query, nearest first: row q occupies [q * k, (q + 1) * k). */
export interface Neighbours {
  k: number;
  /** Gallery row indices; -1 where fewer than k gallery rows were eligible. */
  indices: Int32Array;
  /** Cosine similarity (the dot product of unit vectors); NaN where the index is -1. */
  similarities: Float32Array;
}

export function keyedVectors(keys: ArrayLike<number | bigint>, data: Float32Array, dims: number): KeyedVectors {
  const out = new Int32Array(keys.length);
  for (let i = 0; i < keys.length; i++) out[i] = Number(keys[i]);
  if (data.length !== keys.length * dims) throw new Error(`${keys.length} keys but ${data.length / dims} vectors of ${dims} dims`);
  return { keys: out, data, dims };
}

/** A model version's stored embeddings, indexed by poster key, to pick query and gallery rows from. */
export interface StoredVectors {
  /** The embeddings of these posters, in their order. */
  select(posters: { key: number; id: string }[], version: string): KeyedVectors;
}

export function storedVectors(set: EmbeddingSet): StoredVectors {
  const rows = new Map<number, number>();
  set.keys.forEach((key, i) => rows.set(Number(key), i));
  return {
    select(posters, version) {
      const data = new Float32Array(posters.length * set.dims);
      posters.forEach((poster, i) => {
        const at = rows.get(poster.key);
        if (at === undefined) throw new Error(`poster ${poster.id} has no embedding for ${version}`);
        data.set(set.vectors.subarray(at * set.dims, (at + 1) * set.dims), i * set.dims);
      });
      return keyedVectors(posters.map((p) => p.key), data, set.dims);
    },
  };
}

const QUERY_BLOCK = 4;

/**
 * Exact k-nearest neighbours by cosine similarity (on unit vectors the same order as Euclidean
 * distance). A gallery row with the query's own key is never returned, unless `includeSelf` (the
 * paper's protocol). Equal similarities are ordered by gallery row, so the result is deterministic.
 */
export function exactKnn(queries: KeyedVectors, gallery: KeyedVectors, k: number, options: { includeSelf?: boolean } = {}): Neighbours {
  if (queries.dims !== gallery.dims) throw new Error(`queries have ${queries.dims} dims, the gallery ${gallery.dims}`);
  const dims = queries.dims;
  const nq = queries.keys.length;
  const ng = gallery.keys.length;
  const indices = new Int32Array(nq * k).fill(-1);
  const similarities = new Float32Array(nq * k).fill(Number.NaN);
  const rows = Array.from({ length: QUERY_BLOCK }, () => new Float32Array(ng));
  const selector = new TopK(ng);
  const q = queries.data;
  const g = gallery.data;
  for (let start = 0; start < nq; start += QUERY_BLOCK) {
    const count = Math.min(QUERY_BLOCK, nq - start);
    // Four queries against one gallery row at a time: each gallery value is loaded once for four products.
    const o0 = start * dims;
    const o1 = (start + Math.min(1, count - 1)) * dims;
    const o2 = (start + Math.min(2, count - 1)) * dims;
    const o3 = (start + Math.min(3, count - 1)) * dims;
    const r0 = rows[0]!;
    const r1 = rows[1]!;
    const r2 = rows[2]!;
    const r3 = rows[3]!;
    for (let j = 0; j < ng; j++) {
      const go = j * dims;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let d = 0; d < dims; d++) {
        const x = g[go + d]!;
        s0 += q[o0 + d]! * x;
        s1 += q[o1 + d]! * x;
        s2 += q[o2 + d]! * x;
        s3 += q[o3 + d]! * x;
      }
      r0[j] = s0;
      r1[j] = s1;
      r2[j] = s2;
      r3[j] = s3;
    }
    for (let b = 0; b < count; b++) {
      const qi = start + b;
      const self = options.includeSelf ? null : queries.keys[qi]!;
      selector.select(rows[b]!, k, self === null || self < 0 ? null : (j) => gallery.keys[j] === self, indices, similarities, qi * k);
    }
  }
  return { k, indices, similarities };
}

/** Top-k selection over one row of similarities: a quickselect for the threshold, then a sort of the few above it. */
class TopK {
  private readonly order: Int32Array;
  private readonly scratch: Float32Array;

  constructor(size: number) {
    this.order = new Int32Array(size);
    this.scratch = new Float32Array(size);
  }

  select(
    row: Float32Array,
    k: number,
    excluded: ((index: number) => boolean) | null,
    indices: Int32Array,
    similarities: Float32Array,
    offset: number,
  ): void {
    let n = 0;
    for (let j = 0; j < row.length; j++) {
      if (excluded?.(j)) continue;
      this.order[n] = j;
      this.scratch[n++] = row[j]!;
    }
    const take = Math.min(k, n);
    if (take === 0) return;
    const threshold = kthLargest(this.scratch.subarray(0, n), take);
    let picked = 0;
    for (let i = 0; i < n; i++) if (row[this.order[i]!]! > threshold) this.order[picked++] = this.order[i]!;
    // Rows equal to the threshold fill what is left, lowest row first (order[] is still ascending there).
    for (let j = 0; picked < take && j < row.length; j++) {
      if (row[j] === threshold && !excluded?.(j)) this.order[picked++] = j;
    }
    const chosen = Array.from(this.order.subarray(0, take));
    chosen.sort((a, b) => row[b]! - row[a]! || a - b);
    for (let i = 0; i < take; i++) {
      indices[offset + i] = chosen[i]!;
      similarities[offset + i] = row[chosen[i]!]!;
    }
  }
}

/** The k-th largest value (k ≥ 1); reorders `values`. */
function kthLargest(values: Float32Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  const target = k - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i]! > pivot) i++;
      while (values[j]! < pivot) j--;
      if (i <= j) {
        const t = values[i]!;
        values[i] = values[j]!;
        values[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return values[target]!;
  }
  return values[target]!;
}

/**
 * How much similarity tells apart: the median over queries of (similarity of the 1st neighbour −
 * similarity of the `rank`-th). Near 0 when every poster is about equally similar to every other.
 */
export function similaritySpread(neighbours: Neighbours, rank = 100): number | null {
  if (neighbours.k < rank) return null;
  const queries = neighbours.indices.length / neighbours.k;
  const gaps: number[] = [];
  for (let q = 0; q < queries; q++) {
    const first = neighbours.similarities[q * neighbours.k]!;
    const last = neighbours.similarities[q * neighbours.k + rank - 1]!;
    if (Number.isFinite(first) && Number.isFinite(last)) gaps.push(first - last);
  }
  if (gaps.length === 0) return null;
  gaps.sort((a, b) => a - b);
  const mid = gaps.length >> 1;
  return gaps.length % 2 ? gaps[mid]! : (gaps[mid - 1]! + gaps[mid]!) / 2;
}
