/**
 * What `diversity` costs and buys: the search endpoints' maximal marginal relevance applied to each
 * query's exact nearest, as the server applies it to the index's (a pool of 4k, k picked), so that
 * the spread of the answers (their mean pairwise similarity) and the genre vote of what is picked can
 * be set beside the answer without diversity.
 */
import { dot, maximalMarginalRelevance } from '../search/mmr.js';
import { diversityPool } from '../service/poster-search.js';
import type { KeyedVectors, Neighbours } from './knn.js';

/** Each query's k answers at this diversity, picked from its first 4k exact neighbours, as neighbour rows. */
export function diversified(neighbours: Neighbours, gallery: KeyedVectors, k: number, diversity: number): Neighbours {
  const queries = neighbours.indices.length / neighbours.k;
  const pool = Math.min(diversityPool(k), neighbours.k);
  const indices = new Int32Array(queries * k).fill(-1);
  const similarities = new Float32Array(queries * k).fill(Number.NaN);
  for (let q = 0; q < queries; q++) {
    const rows: number[] = [];
    for (let i = 0; i < pool; i++) {
      const row = neighbours.indices[q * neighbours.k + i]!;
      if (row >= 0) rows.push(row);
    }
    const candidates = rows.map((row, i) => ({ relevance: neighbours.similarities[q * neighbours.k + i]!, vector: rowOf(gallery, row) }));
    const picked = diversity ? maximalMarginalRelevance(candidates, k, diversity) : candidates.slice(0, k).map((_, i) => i);
    picked.forEach((i, rank) => {
      indices[q * k + rank] = rows[i]!;
      similarities[q * k + rank] = candidates[i]!.relevance;
    });
  }
  return { k, indices, similarities };
}

/** The mean, over queries with at least two answers, of the mean cosine similarity between each two of its answers. */
export function meanPairwiseSimilarity(neighbours: Neighbours, gallery: KeyedVectors): number | null {
  const queries = neighbours.indices.length / neighbours.k;
  let sum = 0;
  let counted = 0;
  for (let q = 0; q < queries; q++) {
    const rows = Array.from(neighbours.indices.subarray(q * neighbours.k, (q + 1) * neighbours.k)).filter((row) => row >= 0);
    if (rows.length < 2) continue;
    let pairs = 0;
    let total = 0;
    for (let i = 0; i < rows.length; i++) {
      for (let j = i + 1; j < rows.length; j++, pairs++) total += dot(rowOf(gallery, rows[i]!), rowOf(gallery, rows[j]!));
    }
    sum += total / pairs;
    counted += 1;
  }
  return counted ? sum / counted : null;
}

const rowOf = (vectors: KeyedVectors, row: number) => vectors.data.subarray(row * vectors.dims, (row + 1) * vectors.dims);
