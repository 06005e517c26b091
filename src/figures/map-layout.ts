import { UMAP } from 'umap-js';
import { seededRandom } from './random.js';

/** UMAP settings of the embedding map; part of the cache's identity, so changing one recomputes. */
export const MAP_PARAMS = { method: 'umap', nNeighbors: 15, minDist: 0.1, seed: 42 } as const;
export type MapParams = typeof MAP_PARAMS;

/**
 * 2-D UMAP coordinates of row-major vectors (x then y per point) in [0, 1], aspect ratio kept.
 * Seeded: the same vectors in the same order give the same map.
 */
export function layoutMap(data: Float32Array, dims: number, params: MapParams = MAP_PARAMS): Float32Array {
  const n = data.length / dims;
  const coords = new Float32Array(n * 2);
  if (n === 0) return coords;
  if (n <= 2) {
    for (let i = 0; i < n; i++) coords.set([i === 0 ? 0.25 : 0.75, 0.5], i * 2);
    return coords;
  }
  const rows = Array.from({ length: n }, (_, i) => Array.from(data.subarray(i * dims, (i + 1) * dims)));
  const umap = new UMAP({
    nComponents: 2,
    nNeighbors: Math.min(params.nNeighbors, n - 1),
    minDist: params.minDist,
    random: seededRandom(params.seed),
  });
  const embedding = umap.fit(rows);
  // One scale for both axes (the larger extent fills [0, 1], the other is centred): UMAP's
  // distances are only meaningful relative to each other, so the map keeps its aspect ratio.
  const min = [Infinity, Infinity];
  const max = [-Infinity, -Infinity];
  for (const point of embedding) {
    for (let a = 0; a < 2; a++) {
      min[a] = Math.min(min[a]!, point[a]!);
      max[a] = Math.max(max[a]!, point[a]!);
    }
  }
  const extent = Math.max(max[0]! - min[0]!, max[1]! - min[1]!) || 1;
  const offset = [0, 1].map((a) => (1 - (max[a]! - min[a]!) / extent) / 2);
  embedding.forEach((point, i) => {
    for (let a = 0; a < 2; a++) coords[i * 2 + a] = offset[a]! + (point[a]! - min[a]!) / extent;
  });
  return coords;
}
