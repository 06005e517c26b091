import usearch from 'usearch';
import { openGraphWalk, type GraphWalk } from './graph-walk.js';

const { Index, MetricKind, ScalarKind } = usearch;
export type UsearchIndex = InstanceType<typeof Index>;

/** How the HNSW graph stores its vectors: float32, or usearch's half and 8-bit forms (a half and a quarter of the memory). */
export type IndexScalar = 'f32' | 'f16' | 'i8';
export const INDEX_SCALARS: readonly IndexScalar[] = ['f32', 'f16', 'i8'];

/**
 * expansionSearch 1: usearch walks with max(its expansion, the count asked), so every search sets its
 * own by the count it asks for (VectorIndex: DEFAULT_EXPANSION, or less where a caller chooses).
 */
const HNSW = { connectivity: 16, expansionAdd: 128, expansionSearch: 1 };
const SCALAR_KIND = { f32: ScalarKind.F32, f16: ScalarKind.F16, i8: ScalarKind.I8 } as const;

/**
 * The posters a build inserts on one thread before inserting the rest on all of them. usearch's
 * concurrent inserts into a graph of a few hundred nodes leave some nodes no search can reach
 * (80 posters on 2 threads: 77 builds in 200 had one, none on one thread); past a thousand,
 * concurrency costs no recall, and one thread for the first thousand costs well under a second.
 */
const SINGLE_THREADED_START = 1_000;

export function newUsearchIndex(dims: number, scalar: IndexScalar): UsearchIndex {
  return new Index({
    dimensions: dims,
    metric: MetricKind.L2sq,
    quantization: SCALAR_KIND[scalar],
    connectivity: HNSW.connectivity,
    expansion_add: HNSW.expansionAdd,
    expansion_search: HNSW.expansionSearch,
    multi: false,
  });
}

/** Inserts a build's batch: on one thread while the graph is under SINGLE_THREADED_START nodes, then on all. */
export function addBatch(index: UsearchIndex, keys: BigUint64Array, vectors: Float32Array, dims: number): void {
  const alone = Math.max(0, Math.min(keys.length, SINGLE_THREADED_START - Number(index.size())));
  if (alone > 0) index.add(keys.subarray(0, alone), vectors.subarray(0, alone * dims), 1);
  if (alone < keys.length) index.add(keys.subarray(alone), vectors.subarray(alone * dims), 0);
}

/** A graph search's answer: keys and squared Euclidean distances, nearest first. */
export interface GraphMatches {
  keys: ArrayLike<bigint>;
  distances: ArrayLike<number>;
}

/** The HNSW part of a version's index, as VectorIndex uses it. */
export interface Graph {
  readonly size: number;
  contains(key: bigint): boolean;
  /** Adds a vector under `key`, replacing the one it had. */
  put(key: bigint, vector: Float32Array): void;
  remove(key: bigint): void;
  /** The `count` nearest, walking with an expansion of `count` at least. */
  search(query: Float32Array, count: number): GraphMatches;
  /** The nearest `count` of each query, on `threads` threads where the graph can. */
  searchMany(queries: Float32Array[], count: number, threads: number): GraphMatches[];
  /** The usearch index holding every vector, to save as a checkpoint; null when some live beside the file it maps. */
  whole(): UsearchIndex | null;
}

/** A graph read whole into memory: changed in place, saved whole. */
export class LoadedGraph implements Graph {
  constructor(private readonly index: UsearchIndex) {}

  get size(): number {
    return Number(this.index.size());
  }

  contains(key: bigint): boolean {
    return this.index.contains(key) as boolean;
  }

  put(key: bigint, vector: Float32Array): void {
    if (this.index.contains(key)) this.index.remove(key);
    this.index.add(key, vector);
  }

  remove(key: bigint): void {
    if (this.index.contains(key)) this.index.remove(key);
  }

  search(query: Float32Array, count: number): GraphMatches {
    return this.index.search(query, count, 1);
  }

  searchMany(queries: Float32Array[], count: number, threads: number): GraphMatches[] {
    return batchSearch(this.index, queries, count, threads);
  }

  whole(): UsearchIndex {
    return this.index;
  }
}

/**
 * A graph file mapped into memory as written (usearch's view: no read at open, pages come in as
 * searches touch them), with the changes made since in a small graph of its own beside it. A
 * server opens its graphs this way: reading a million posters' graph whole holds the thread for
 * seconds, mapping it takes milliseconds. The mapped posters since removed or replaced are hidden
 * from its answers, which ask the file's graph for as many more.
 */
export class MappedGraph implements Graph {
  private readonly added: UsearchIndex;
  /** The added vectors again, searched exactly while there are at most ADDED_EXACT_LIMIT of them. */
  private readonly addedVectors: PackedVectors;
  private readonly hidden = new Set<bigint>();

  constructor(
    private readonly mapped: UsearchIndex,
    dims: number,
    scalar: IndexScalar,
    /** The same file mapped again for searches of several queries (graph-walk.ts); null for an i8 graph, without the addon, or for a file it does not read. */
    private readonly walk: GraphWalk | null = null,
  ) {
    this.added = newUsearchIndex(dims, scalar);
    this.addedVectors = new PackedVectors(dims);
  }

  static view(file: string, dims: number, scalar: IndexScalar): MappedGraph {
    const mapped = newUsearchIndex(dims, scalar);
    mapped.view(file);
    return new MappedGraph(mapped, dims, scalar, scalar === 'i8' ? null : openGraphWalk(file));
  }

  get size(): number {
    return Number(this.mapped.size()) - this.hidden.size + Number(this.added.size());
  }

  /** Changes held beside the mapped file: what a checkpoint would take in. */
  get changes(): number {
    return this.hidden.size + Number(this.added.size());
  }

  contains(key: bigint): boolean {
    return (this.added.contains(key) as boolean) || (!this.hidden.has(key) && (this.mapped.contains(key) as boolean));
  }

  put(key: bigint, vector: Float32Array): void {
    this.remove(key);
    this.added.add(key, vector);
    this.addedVectors.put(key, vector);
  }

  remove(key: bigint): void {
    if (this.mapped.contains(key)) this.hidden.add(key);
    if (this.added.contains(key)) this.added.remove(key);
    this.addedVectors.remove(key);
  }

  search(query: Float32Array, count: number): GraphMatches {
    const mappedSize = Number(this.mapped.size());
    const fromFile = mappedSize === 0 ? null : this.mapped.search(query, Math.min(count + this.hidden.size, mappedSize), 1);
    return this.merged(fromFile, this.searchAdded([query], count)?.[0] ?? null, count);
  }

  /** The file's part by the graph walk where there is one (graph-walk.ts), else by usearch's binding; on up to `threads` threads either way. */
  searchMany(queries: Float32Array[], count: number, threads: number): GraphMatches[] {
    const mappedSize = Number(this.mapped.size());
    const asked = Math.min(count + this.hidden.size, mappedSize);
    const fromFile = mappedSize === 0 ? null : this.walk ? walkEach(this.walk, queries, asked, threads) : batchSearch(this.mapped, queries, asked, threads);
    const fromAdded = this.searchAdded(queries, count, threads);
    return queries.map((_, q) => this.merged(fromFile?.[q] ?? null, fromAdded?.[q] ?? null, count));
  }

  /**
   * The nearest `count` added posters of each query: exactly while they are few (HNSW over a few
   * dozen nodes, some removed or replaced, left a live add its own picture did not find), then by their graph.
   */
  private searchAdded(queries: Float32Array[], count: number, threads = 1): GraphMatches[] | null {
    const size = this.addedVectors.size;
    if (size === 0) return null;
    if (size <= ADDED_EXACT_LIMIT) return queries.map((query) => this.addedVectors.nearest(query, Math.min(count, size)));
    return batchSearch(this.added, queries, Math.min(count, size), threads);
  }

  /** The nearest `count` of a search of the file's graph (its hidden posters left out) and of the added one's. */
  private merged(fromFile: GraphMatches | null, fromAdded: GraphMatches | null, count: number): GraphMatches {
    const keys: bigint[] = [];
    const distances: number[] = [];
    let i = 0;
    let j = 0;
    const fileCount = fromFile ? fromFile.keys.length : 0;
    const addedCount = fromAdded ? fromAdded.keys.length : 0;
    while (keys.length < count && (i < fileCount || j < addedCount)) {
      if (i < fileCount && this.hidden.has(fromFile!.keys[i]!)) {
        i++;
        continue;
      }
      const takeFile = j >= addedCount || (i < fileCount && fromFile!.distances[i]! <= fromAdded!.distances[j]!);
      if (takeFile) {
        keys.push(fromFile!.keys[i]!);
        distances.push(fromFile!.distances[i++]!);
      } else {
        keys.push(fromAdded!.keys[j]!);
        distances.push(fromAdded!.distances[j++]!);
      }
    }
    return { keys, distances };
  }

  whole(): null {
    return null;
  }
}

/** Up to this many posters added beside a mapped graph are searched exactly (about 0.2 ms at 512 dimensions). */
const ADDED_EXACT_LIMIT = 4_096;

/** Vectors packed in one array by slot, a removal filling its slot with the last: what usearch's exact search reads. */
class PackedVectors {
  private data: Float32Array;
  private readonly keys: bigint[] = [];
  private readonly slots = new Map<bigint, number>();

  constructor(private readonly dims: number) {
    this.data = new Float32Array(dims * 64);
  }

  get size(): number {
    return this.keys.length;
  }

  put(key: bigint, vector: Float32Array): void {
    this.remove(key);
    const slot = this.keys.length;
    if ((slot + 1) * this.dims > this.data.length) {
      const grown = new Float32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data.set(vector, slot * this.dims);
    this.keys.push(key);
    this.slots.set(key, slot);
  }

  remove(key: bigint): void {
    const slot = this.slots.get(key);
    if (slot === undefined) return;
    const last = this.keys.length - 1;
    if (slot !== last) {
      this.data.copyWithin(slot * this.dims, last * this.dims, (last + 1) * this.dims);
      this.keys[slot] = this.keys[last]!;
      this.slots.set(this.keys[slot]!, slot);
    }
    this.keys.pop();
    this.slots.delete(key);
  }

  /** The `count` nearest (1 ≤ count ≤ size), by squared Euclidean distance. */
  nearest(query: Float32Array, count: number): GraphMatches {
    // usearch's exactSearch reads each array from its buffer's start, whatever the view's offset: a
    // query that is a view into a larger buffer (an embedding batch's output) is copied first.
    const atStart = query.byteOffset === 0 ? query : query.slice();
    const found = usearch.exactSearch(this.data.subarray(0, this.keys.length * this.dims), atStart, this.dims, count, MetricKind.L2sq, 1) as InstanceType<typeof usearch.Matches>;
    return { keys: Array.from(found.keys, (slot) => this.keys[Number(slot)]!), distances: found.distances };
  }
}

/** The queries in one array, one after another. */
function packed(queries: Float32Array[]): Float32Array {
  const dims = queries[0]!.length;
  const matrix = new Float32Array(queries.length * dims);
  queries.forEach((q, i) => matrix.set(q, i * dims));
  return matrix;
}

/** The nearest `count` of each query by one native call, on `threads` threads. */
function batchSearch(index: UsearchIndex, queries: Float32Array[], count: number, threads: number): GraphMatches[] {
  if (queries.length === 1) return [index.search(queries[0]!, count, 1)]; // usearch answers one query unbatched
  const batch = index.search(packed(queries), count, threads) as InstanceType<typeof usearch.BatchMatches>;
  return queries.map((_, q) => {
    const found = Number(batch.counts[q]);
    return { keys: batch.keys.subarray(q * count, q * count + found), distances: batch.distances.subarray(q * count, q * count + found) };
  });
}

/** The nearest `count` of each query by the graph walk, on up to `threads` threads, walking with `count` as usearch does here. */
function walkEach(walk: GraphWalk, queries: Float32Array[], count: number, threads: number): GraphMatches[] {
  const [keys, distances, counts] = walk.searchEach(packed(queries), count, count, threads);
  return queries.map((_, q) => ({ keys: keys.subarray(q * count, q * count + counts[q]!), distances: distances.subarray(q * count, q * count + counts[q]!) }));
}
