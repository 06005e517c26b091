import type { Poster } from '../state/catalog.js';
import { hasFilter, matches, PosterFilters, type FilterFields, type SearchFilter } from './poster-filters.js';
import { RERANK_EXTRA } from './quantized-rows.js';
import type { Neighbor, VectorIndex } from './vector-index.js';

export type { SearchFilter } from './poster-filters.js';

export interface Hit {
  poster: Poster;
  distance: number;
  /** Cosine similarity of the unit vectors: 1 - distance² / 2. */
  similarity: number;
}

/**
 * A filter leaving at most this many posters is answered by an exact scan of their int8 rows
 * (QuantizedRows); one leaving more, by the graph, over-fetching by its selectivity.
 */
export const EXACT_SCAN_LIMIT = 20_000;

/**
 * The most a graph search is asked for: asking for more costs more than an exact scan of that many
 * rows, and a broad filter far from the query would otherwise grow the ask to the whole catalog
 * (at a million posters, a search holding the event loop for seconds). Past it, the exact scan.
 */
export const GRAPH_FETCH_LIMIT = 20_000;

/**
 * Nearest-neighbour search over one model version's index, with metadata filters and exclusions.
 * The live catalog changes it through put/update/remove, after SQLite has committed the change.
 * In memory it keeps only what filters look at; the hits' posters are read from the catalog (`posters`),
 * as is a poster's stored vector when asked for (`vector`). The graph's answers carry the distances of its
 * own storage (exact in f32; within about 1e-3 in f16), a scan's those of its rows (within about 1e-5).
 */
export class Searcher {
  private readonly filters: PosterFilters;

  constructor(
    private readonly index: VectorIndex,
    private readonly vector: (key: number) => Promise<Float32Array | null>,
    /** What filters look at of each poster it covers (or those already gathered: PosterFilters.inPages). */
    covered: Iterable<FilterFields> | PosterFilters,
    private readonly posters: (keys: number[]) => Promise<Map<number, Poster>>,
    private readonly exactScanLimit = EXACT_SCAN_LIMIT,
    private readonly graphFetchLimit = GRAPH_FETCH_LIMIT,
  ) {
    this.filters = covered instanceof PosterFilters ? covered : new PosterFilters(covered);
  }

  get size(): number {
    return this.index.size;
  }

  /** How many candidates a graph search keeps while it walks (usearch's ef), unless a caller asks for another. */
  get expansion(): number {
    return this.index.expansion;
  }

  /** Every genre among them. */
  genres(): string[] {
    return this.filters.genres();
  }

  /** The stored embedding of a poster this searcher covers; null for one it does not (yet). */
  async vectorOf(key: number): Promise<Float32Array | null> {
    return this.index.has(key) ? this.vector(key) : null;
  }

  /** A poster added (or its picture replaced) with its vector under this searcher's model. */
  put(poster: Poster, vector: Float32Array): void {
    this.index.add(poster.key, vector);
    this.filters.put(poster);
  }

  /** New metadata of a poster it covers (the vector unchanged). */
  update(poster: Poster): void {
    if (this.filters.get(poster.key)) this.filters.put(poster);
  }

  remove(key: number): void {
    this.index.remove(key);
    this.filters.remove(key);
  }

  /**
   * The k nearest posters that pass the filter and are not excluded; exactly k whenever k exist.
   * A selective filter is an exact scan over what it leaves. Otherwise the graph is asked for
   * enough to leave k after the filter at its selectivity, and asked again for four times as many
   * until k survive, up to GRAPH_FETCH_LIMIT; then an exact scan over every poster that passes.
   */
  search(query: Float32Array, k: number, filter: SearchFilter = {}, exclude: Set<number> = new Set()): Promise<Hit[]> {
    return this.hitsOf(this.nearest(query, k, filter, exclude));
  }

  /** What search finds, as keys and distances (no poster read). */
  nearest(query: Float32Array, k: number, filter: SearchFilter = {}, exclude: Set<number> = new Set()): Neighbor[] {
    const plan = this.plan(k, filter, exclude);
    if (plan.kind === 'none') return [];
    if (plan.kind === 'scan') return this.index.rows.nearest(query, k, plan.keys());
    for (let fetch = plan.fetch; fetch <= this.graphFetchLimit; fetch = Math.min(fetch * 4, this.index.size)) {
      const found = this.index.search(query, fetch).filter((n) => plan.accept(n.key));
      if (found.length >= k) return found.slice(0, k);
      if (fetch >= this.index.size) break;
    }
    return this.index.rows.nearest(query, k, plan.keys());
  }

  /**
   * For each query, the keys among which its k nearest that pass the filter and are not excluded
   * lie, nearest first: for a caller that scores the candidates exactly itself (best_score, against
   * every example). The graph's k nearest, the queries' first searches made by one native call on up
   * to `threads` threads (best_score's positives: nearly the time of one search, not of several); or,
   * over a selective filter, the best k + 8 by the int8 rows' coarse layer, unreranked, the filter's
   * posters gathered once for all the queries. Fewer than k only when fewer pass.
   */
  candidatesEach(queries: Float32Array[], k: number, filter: SearchFilter, exclude: Set<number>, threads: number, expansion?: number): number[][] {
    const plan = this.plan(k, filter, exclude);
    if (plan.kind === 'none') return queries.map(() => []);
    if (plan.kind === 'scan') return this.index.rows.coarseNearestEach(queries, k + RERANK_EXTRA, plan.keys());
    const keysOf = (found: Neighbor[]) => found.map((n) => n.key);
    if (queries.length < 2 || plan.fetch > this.graphFetchLimit) return queries.map((query) => keysOf(this.nearest(query, k, filter, exclude)));
    return this.index.searchMany(queries, plan.fetch, Math.min(threads, queries.length), expansion).map((neighbors, i) => {
      const found = neighbors.filter((n) => plan.accept(n.key));
      return keysOf(found.length >= k ? found.slice(0, k) : this.nearest(queries[i]!, k, filter, exclude));
    });
  }

  /**
   * How a search for the k nearest that pass the filter goes: nothing to search; an exact scan of
   * what a selective filter leaves; or the graph, asked first for enough to leave k after the
   * filter at its selectivity (then, in nearest, four times as many until k survive).
   */
  private plan(k: number, filter: SearchFilter, exclude: Set<number>): SearchPlan {
    const accept = (key: number): boolean => {
      if (exclude.has(key)) return false;
      const poster = this.filters.get(key);
      return poster !== undefined && matches(poster, filter);
    };
    const total = this.index.size;
    if (total === 0 || k <= 0) return { kind: 'none' };
    const candidates = hasFilter(filter) ? this.filters.candidates(filter) : null;
    const keys = () => filterKeys(candidates ? candidates.keys() : this.filters.keys(), accept);
    if (candidates && candidates.size <= this.exactScanLimit) {
      // Looking each candidate up again costs a cache miss apiece in a catalog of a million.
      const pass = candidates.all ? (key: number) => !exclude.has(key) : accept;
      return { kind: 'scan', keys: () => filterKeys(candidates.keys(), pass) };
    }
    const share = candidates ? Math.max(candidates.size / total, 1e-6) : 1;
    return { kind: 'graph', fetch: Math.min(total, Math.ceil(((candidates ? 2 : 1) * k) / share) + exclude.size), accept, keys };
  }

  /**
   * Every poster that passes the filter and is not excluded, when at most `max` can (the filter's
   * most selective part leaves no more, or the searcher covers no more); null otherwise.
   */
  passing(filter: SearchFilter, exclude: Set<number>, max: number): number[] | null {
    const candidates = hasFilter(filter) ? this.filters.candidates(filter) : null;
    if ((candidates?.size ?? this.index.size) > max) return null;
    return filterKeys(candidates ? candidates.keys() : this.filters.keys(), (key) => {
      if (exclude.has(key)) return false;
      const poster = this.filters.get(key);
      return poster !== undefined && matches(poster, filter);
    });
  }

  /**
   * A poster's vector as the int8 rows hold it (within about 1e-5 of the stored one), from memory:
   * for comparing candidates with each other (diversity, recommend), where a read of SQLite apiece would cost more.
   */
  rowVector(key: number): Float32Array | null {
    return this.index.rows.vector(key);
  }

  /** Each poster's dot product with each of some vectors, from the int8 rows (to about 1e-5): QuantizedRows.dotProducts. */
  rowDots(keys: number[], vectors: Float32Array[]): Float32Array {
    return this.index.rows.dotProducts(keys, vectors);
  }

  /** Neighbours (from nearest, or scored elsewhere) as hits, in their order, with their posters. */
  async hitsOf(neighbors: Neighbor[]): Promise<Hit[]> {
    const posters = await this.posters(neighbors.map((n) => n.key));
    const hits: Hit[] = [];
    for (const { key, distance } of neighbors) {
      const poster = posters.get(key);
      if (poster) hits.push({ poster, distance, similarity: 1 - (distance * distance) / 2 });
    }
    return hits;
  }
}

type SearchPlan =
  | { kind: 'none' }
  | { kind: 'scan'; keys: () => number[] }
  | { kind: 'graph'; fetch: number; accept: (key: number) => boolean; keys: () => number[] };

function filterKeys(keys: Iterable<number>, accept: (key: number) => boolean): number[] {
  const out: number[] = [];
  for (const key of keys) if (accept(key)) out.push(key);
  return out;
}
