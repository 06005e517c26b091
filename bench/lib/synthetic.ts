/**
 * A synthetic catalog in the real schema's shape, for the benchmarks at a million posters
 * (bench/million.ts, bench/million-postgres.ts): 512-d unit embeddings in two levels of clusters
 * (1,000 clusters of 20 sub-clusters; a poster is its cluster's centre + 0.6 × its sub-cluster's
 * direction + 0.35 × noise, normalised), so that nearest neighbours and recall mean something.
 * Genres: a primary genre tied to the cluster (18 of them, about 5.6 % each), a second one at random
 * for half the posters, and "Western" for 1 % at random; years skewed to recent decades, so
 * 1900–1903 holds about 0.1 %. Seeded: the same n gives the same catalog.
 */
import { seededRandom } from '../../src/figures/random.js';

export const DIMS = 512;
export const CLUSTERS = 1000;
export const SUBCLUSTERS = 20;
const GENRES = [
  'Action', 'Adventure', 'Animation', 'Comedy', 'Crime', 'Documentary', 'Drama', 'Family', 'Fantasy',
  'History', 'Horror', 'Music', 'Mystery', 'Romance', 'Science Fiction', 'Thriller', 'War', 'TV Movie',
]; // prettier-ignore
export const RARE_GENRE = 'Western';

function gaussians(rand: () => number, out: Float32Array, scale: number): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t) * scale;
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(t) * scale;
  }
  return out;
}

function normalise(v: Float32Array): Float32Array {
  let sum = 0;
  for (let d = 0; d < v.length; d++) sum += v[d]! * v[d]!;
  const inv = 1 / Math.sqrt(sum);
  for (let d = 0; d < v.length; d++) v[d]! *= inv;
  return v;
}

export interface Synthetic {
  vectors: Float32Array;
  genres: string[][];
  years: number[];
  /** A generator of fresh query vectors from the same distribution (never in the catalog). */
  query: () => Float32Array;
}

export function synthesise(n: number): Synthetic {
  const rand = seededRandom(8);
  const unit = 1 / Math.sqrt(DIMS);
  const centres = Array.from({ length: CLUSTERS }, () => normalise(gaussians(rand, new Float32Array(DIMS), unit)));
  const subs = Array.from({ length: CLUSTERS * SUBCLUSTERS }, () => normalise(gaussians(rand, new Float32Array(DIMS), unit)));
  const noise = new Float32Array(DIMS);
  const draw = (into: Float32Array, cluster: number) => {
    const centre = centres[cluster]!;
    const sub = subs[cluster * SUBCLUSTERS + Math.floor(rand() * SUBCLUSTERS)]!;
    gaussians(rand, noise, unit);
    for (let d = 0; d < DIMS; d++) into[d] = centre[d]! + 0.6 * sub[d]! + 0.35 * noise[d]!;
    return normalise(into);
  };
  const vectors = new Float32Array(n * DIMS);
  const genres: string[][] = [];
  const years: number[] = [];
  for (let i = 0; i < n; i++) {
    const cluster = Math.floor(rand() * CLUSTERS);
    draw(vectors.subarray(i * DIMS, (i + 1) * DIMS), cluster);
    const own = new Set([GENRES[cluster % GENRES.length]!]);
    if (rand() < 0.5) own.add(GENRES[Math.floor(rand() * GENRES.length)]!);
    if (rand() < 0.01) own.add(RARE_GENRE);
    genres.push([...own]);
    years.push(1900 + Math.floor(125 * Math.sqrt(rand())));
  }
  return { vectors, genres, years, query: () => draw(new Float32Array(DIMS), Math.floor(rand() * CLUSTERS)) };
}
