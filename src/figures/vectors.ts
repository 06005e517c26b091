import { keyedVectors, type KeyedVectors } from '../eval/knn.js';
import type { Poster } from '../state/catalog.js';
import type { EmbeddingSet } from '../state/embeddings.js';

/** The stored embeddings of these posters, in their order, for exact search (eval/knn.ts). */
export function vectorsOf(set: EmbeddingSet, posters: Poster[], version: string): KeyedVectors {
  const rows = new Map<number, number>();
  set.keys.forEach((key, i) => rows.set(Number(key), i));
  const data = new Float32Array(posters.length * set.dims);
  posters.forEach((poster, i) => {
    const row = rows.get(poster.key);
    if (row === undefined) throw new Error(`poster ${poster.id} has no embedding for ${version}`);
    data.set(set.vectors.subarray(row * set.dims, (row + 1) * set.dims), i * set.dims);
  });
  return keyedVectors(posters.map((p) => p.key), data, set.dims);
}
