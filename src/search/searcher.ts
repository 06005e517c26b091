import type { Poster } from '../state/catalog.js';
import type { EmbeddingSet } from '../state/embeddings.js';
import type { Neighbor, VectorIndex } from './vector-index.js';

export interface SearchFilter {
  genre?: string;
  yearFrom?: number;
  yearTo?: number;
}

export interface Hit {
  poster: Poster;
  distance: number;
  /** Cosine similarity of the unit vectors: 1 - distance² / 2. */
  similarity: number;
}

export function matches(poster: Poster, filter: SearchFilter): boolean {
  if (filter.genre && !poster.genres.includes(filter.genre)) return false;
  if (filter.yearFrom !== undefined && (poster.year === null || poster.year < filter.yearFrom)) return false;
  if (filter.yearTo !== undefined && (poster.year === null || poster.year > filter.yearTo)) return false;
  return true;
}

function hasFilter(filter: SearchFilter): boolean {
  return filter.genre !== undefined || filter.yearFrom !== undefined || filter.yearTo !== undefined;
}

/** Nearest-neighbour search over one model version's index, with metadata filters and exclusions. */
export class Searcher {
  constructor(
    private readonly index: VectorIndex,
    private readonly embeddings: EmbeddingSet,
    private readonly posters: Map<number, Poster>,
  ) {}

  get size(): number {
    return this.index.size;
  }

  /** The stored embedding of a poster this searcher covers; null for one it does not (yet). */
  vectorOf(key: number): Float32Array | null {
    const { keys, vectors, dims } = this.embeddings;
    const wanted = BigInt(key);
    let lo = 0;
    let hi = keys.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const at = keys[mid]!;
      if (at === wanted) return vectors.subarray(mid * dims, (mid + 1) * dims);
      if (at < wanted) lo = mid + 1;
      else hi = mid - 1;
    }
    return null;
  }

  /**
   * The k nearest posters that pass the filter and are not excluded. Filtered searches over-fetch
   * from the index, growing the request until k survive; if the graph cannot supply them, an exact
   * scan over the posters that pass guarantees exactly k whenever k exist.
   */
  search(query: Float32Array, k: number, filter: SearchFilter = {}, exclude: Set<number> = new Set()): Hit[] {
    const accept = (poster: Poster | undefined): poster is Poster =>
      poster !== undefined && !exclude.has(poster.key) && matches(poster, filter);
    const filtered = hasFilter(filter);
    let fetch = filtered ? k * 4 + exclude.size : k + exclude.size;
    for (;;) {
      const hits = this.toHits(this.index.search(query, fetch)).filter((hit) => accept(hit.poster));
      if (hits.length >= k) return hits.slice(0, k);
      if (fetch >= this.index.size) break;
      fetch = Math.min(fetch * 4, this.index.size);
    }
    return this.exact(query, k, accept);
  }

  private exact(query: Float32Array, k: number, accept: (poster: Poster | undefined) => poster is Poster): Hit[] {
    const { keys, vectors, dims } = this.embeddings;
    const scored: Neighbor[] = [];
    for (let i = 0; i < keys.length; i++) {
      const key = Number(keys[i]);
      if (!accept(this.posters.get(key))) continue;
      let sum = 0;
      for (let d = 0; d < dims; d++) {
        const diff = vectors[i * dims + d]! - query[d]!;
        sum += diff * diff;
      }
      scored.push({ key, distance: Math.sqrt(sum) });
    }
    scored.sort((a, b) => a.distance - b.distance);
    return this.toHits(scored.slice(0, k));
  }

  private toHits(neighbors: Neighbor[]): Hit[] {
    const hits: Hit[] = [];
    for (const { key, distance } of neighbors) {
      const poster = this.posters.get(key);
      if (poster) hits.push({ poster, distance, similarity: 1 - (distance * distance) / 2 });
    }
    return hits;
  }
}
