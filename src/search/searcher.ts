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

/**
 * Nearest-neighbour search over one model version's index, with metadata filters and exclusions.
 * The live catalog changes it through put/update/remove, after SQLite has committed the change.
 */
export class Searcher {
  private readonly vectors = new Map<number, Float32Array>();

  constructor(
    private readonly index: VectorIndex,
    embeddings: EmbeddingSet,
    private readonly posters: Map<number, Poster>,
  ) {
    const { keys, vectors, dims } = embeddings;
    keys.forEach((key, i) => this.vectors.set(Number(key), vectors.subarray(i * dims, (i + 1) * dims)));
  }

  get size(): number {
    return this.index.size;
  }

  /** Every poster this searcher covers. */
  allPosters(): IterableIterator<Poster> {
    return this.posters.values();
  }

  /** The stored embedding of a poster this searcher covers; null for one it does not (yet). */
  vectorOf(key: number): Float32Array | null {
    return this.vectors.get(key) ?? null;
  }

  /** A poster added (or its picture replaced) with its vector under this searcher's model. */
  put(poster: Poster, vector: Float32Array): void {
    this.index.add(poster.key, vector);
    this.vectors.set(poster.key, vector);
    this.posters.set(poster.key, poster);
  }

  /** New metadata of a poster it covers (the vector unchanged). */
  update(poster: Poster): void {
    if (this.posters.has(poster.key)) this.posters.set(poster.key, poster);
  }

  remove(key: number): void {
    this.index.remove(key);
    this.vectors.delete(key);
    this.posters.delete(key);
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
    const scored: Neighbor[] = [];
    for (const [key, vector] of this.vectors) {
      if (!accept(this.posters.get(key))) continue;
      let sum = 0;
      for (let d = 0; d < vector.length; d++) {
        const diff = vector[d]! - query[d]!;
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
