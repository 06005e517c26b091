import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EmbeddingSet } from '../state/embeddings.js';
import { publishFile, temporaryPath, writeAtomically } from '../state/files.js';
import { addBatch, LoadedGraph, MappedGraph, newUsearchIndex, type Graph, type GraphMatches, type IndexScalar, type UsearchIndex } from './graph.js';
import { QuantizedRows } from './quantized-rows.js';

export { INDEX_SCALARS, type IndexScalar } from './graph.js';

export interface Neighbor {
  key: number;
  /** Euclidean distance between unit vectors. */
  distance: number;
}

/** What a version's index is derived from: its embeddings in SQLite and their change log (migrations/008). */
export interface EmbeddingSource {
  readonly dims: number;
  /** The last change recorded to any embedding. */
  lastChange(): number;
  /** Posters whose embedding changed after `seq`, with the vector each has now (null: it has none). */
  changedSince(seq: number): Iterable<{ key: number; vector: Float32Array | null }>;
  /** Every embedding, a batch at a time. */
  batches(size: number): Iterable<EmbeddingSet>;
  /** How many changes the log holds after `seq`. */
  changesSince(seq: number): number;
  /** The changes a saved checkpoint holds are no longer needed. */
  pruneChanges(upTo: number): void;
  /** As pruneChanges, with the thread free between pieces of the log. */
  pruneChangesInPieces(upTo: number): Promise<void>;
  /** The last change pruned from the log (0: none recorded): a checkpoint holding less cannot be replayed up to date. */
  prunedThrough(): number;
}

/** A checkpoint's meta file: the last embedding change its files hold (and, to read, how many vectors). */
interface IndexMeta {
  format: 'marquee-index/3';
  dims: number;
  scalar: IndexScalar;
  count: number;
  seq: number;
  /**
   * The graph file's size when written: a file of another size is garbled, and is rebuilt without
   * handing it to usearch (whose load of a 12-byte file took 86 s). Absent in metas written before it.
   */
  bytes?: number;
}

const BUILD_BATCH = 10_000;

/** What a checkpoint's files hold, in memory. */
interface Checkpoint {
  graph: Graph;
  rows: QuantizedRows;
  seq: number;
}

/**
 * A server's open replays at most this share of the checkpoint's posters as changes beside its
 * mapped graph (and at least MIN_CHANGES_KEPT); past it the checkpoint is rebuilt, taking them in.
 */
const MAX_CHANGES_SHARE = 0.05;
const MIN_CHANGES_KEPT = 1_000;
/** Changes replayed between pauses of a server's open (startMapped). */
const REPLAY_PIECE = 20;

/** The int8 rows file beside a graph file: `<version>.usearch` → `<version>.rows`. */
const rowsPath = (file: string): string => `${file.replace(/\.usearch$/, '')}.rows`;

/** A checkpoint's files, in the order they are written: the graph, the rows, the meta (naming the change they hold up to) last. */
export const checkpointFiles = (file: string): [graph: string, rows: string, meta: string] => [file, rowsPath(file), `${file}.json`];

/** The change a checkpoint's meta file names, or null without a readable one. */
export function checkpointPosition(file: string): number | null {
  try {
    const seq = (JSON.parse(readFileSync(`${file}.json`, 'utf8')) as Partial<IndexMeta>).seq;
    return typeof seq === 'number' ? seq : null;
  } catch {
    return null;
  }
}

/** How many candidates a graph search keeps while it walks (usearch's expansion): recall against speed. */
export const DEFAULT_EXPANSION = 64;

export interface OpenOptions {
  scalar?: IndexScalar;
  expansion?: number;
  onRebuild?: (reason: string) => void;
}

/** Writes a fresh checkpoint of the index at `file` from SQLite, elsewhere than on the caller's thread (see index-build.ts). */
export type BuildCheckpoint = (file: string, scalar: IndexScalar) => Promise<void>;

/**
 * One model version's vectors in memory, searchable: a usearch HNSW graph for nearest neighbours
 * and a compact int8 copy (QuantizedRows) for exact scans over the few posters a filter leaves.
 * Posters added to or removed from the live catalog change both in place.
 *
 * On disk the two are a checkpoint (`<version>.usearch`, `.rows`, and a meta file naming the last
 * embedding change they hold). Opening one loads the files and replays the changes SQLite logged
 * after it, so a start reads what changed, not every embedding; a missing or unreadable checkpoint
 * is rebuilt from SQLite. The files are derived: deleting them costs a rebuild, nothing else.
 * A server (openWith) maps the graph file rather than reading it (graph.ts: MappedGraph), so
 * that neither a start nor a swap holds its event loop while a large graph is read.
 */
export class VectorIndex {
  /** Changes replayed from SQLite's log at open. */
  replayed = 0;
  /** The search expansion: usearch walks with max(its own, the count asked), so asking for this many sets it. */
  expansion = DEFAULT_EXPANSION;

  private constructor(
    private readonly file: string,
    private readonly graph: Graph,
    readonly rows: QuantizedRows,
    readonly dims: number,
    readonly scalar: IndexScalar,
    private readonly source: EmbeddingSource,
    private seq: number,
    /** Why the files were rebuilt at open; null when the checkpoint was used. */
    readonly rebuilt: string | null,
  ) {}

  get size(): number {
    return this.graph.size;
  }

  /** Adds a poster's vector, replacing the one it had. */
  add(key: number, vector: Float32Array): void {
    this.graph.put(BigInt(key), vector);
    this.rows.set(key, vector);
  }

  remove(key: number): void {
    this.graph.remove(BigInt(key));
    this.rows.delete(key);
  }

  has(key: number): boolean {
    return this.rows.has(key);
  }

  static open(file: string, source: EmbeddingSource, options: OpenOptions = {}): VectorIndex {
    const scalar = options.scalar ?? 'f32';
    const opened = VectorIndex.fromCheckpoint(file, source, options);
    if (typeof opened !== 'string') return opened;
    options.onRebuild?.(opened);
    const { index, rows, seq } = VectorIndex.build(file, source, scalar);
    const built = VectorIndex.start(file, source, options, { graph: new LoadedGraph(index), rows, seq }, opened);
    built.checkpoint();
    return built;
  }

  /**
   * As `open`, for a server, and nothing long on its thread: the graph file is mapped, not read
   * (milliseconds, where reading 200,000 posters' graph took 1.7 s), the rows read a piece at a
   * time, and a missing or unusable checkpoint is rebuilt by `build` (on a worker thread: at a
   * million posters a build takes minutes). Changes replayed at open stay in SQLite's log, held
   * beside the mapped graph, until the next build.
   */
  static async openWith(build: BuildCheckpoint, file: string, source: EmbeddingSource, options: OpenOptions = {}): Promise<VectorIndex> {
    const scalar = options.scalar ?? 'f32';
    const opened = await VectorIndex.fromMappedCheckpoint(file, source, options);
    if (typeof opened !== 'string') return opened;
    options.onRebuild?.(opened);
    await build(file, scalar);
    const built = await VectorIndex.map(file, source, scalar);
    if (typeof built === 'string') throw new Error(`the index built for ${file} cannot be read: ${built}`);
    await source.pruneChangesInPieces(built.seq);
    return VectorIndex.startMapped(file, source, options, built, opened);
  }

  /** The index a checkpoint's files hold, brought up to date with SQLite's log; or why they cannot be used. */
  private static fromCheckpoint(file: string, source: EmbeddingSource, options: OpenOptions): VectorIndex | string {
    const loaded = VectorIndex.load(file, source, options.scalar ?? 'f32');
    if (typeof loaded === 'string') return loaded;
    const opened = VectorIndex.start(file, source, options, loaded, null);
    // Both files converge on SQLite's state by the replay, whichever checkpoint each was written at.
    if (opened.size !== opened.rows.size) return 'graph and rows disagree';
    if (opened.replayed > 0) opened.checkpoint();
    return opened;
  }

  /**
   * As fromCheckpoint, with the graph file mapped: the changes replayed are kept beside it (and in
   * SQLite's log) rather than saved, up to a share of the posters; past it, the checkpoint is
   * rebuilt with them.
   */
  private static async fromMappedCheckpoint(file: string, source: EmbeddingSource, options: OpenOptions): Promise<VectorIndex | string> {
    const mapped = await VectorIndex.map(file, source, options.scalar ?? 'f32');
    if (typeof mapped === 'string') return mapped;
    // Counted before any is replayed: a replay adds one poster at a time on this thread (200,000 took 194 s).
    const changes = source.changesSince(mapped.seq);
    if (changes > Math.max(MIN_CHANGES_KEPT, MAX_CHANGES_SHARE * mapped.graph.size)) return `${changes} changes since the checkpoint, more than are kept beside it`;
    const opened = await VectorIndex.startMapped(file, source, options, mapped, null);
    if (opened.size !== opened.rows.size) return 'graph and rows disagree';
    return opened;
  }

  private static start(file: string, source: EmbeddingSource, options: OpenOptions, parts: Checkpoint, rebuilt: string | null): VectorIndex {
    const opened = new VectorIndex(file, parts.graph, parts.rows, source.dims, options.scalar ?? 'f32', source, parts.seq, rebuilt);
    opened.expansion = options.expansion ?? DEFAULT_EXPANSION;
    for (const _ of opened.replay());
    return opened;
  }

  /** As start, for a server: the replay a piece at a time, the thread free between pieces (each change is a graph insert, about 1 ms at 200,000 posters). */
  private static async startMapped(file: string, source: EmbeddingSource, options: OpenOptions, parts: Checkpoint, rebuilt: string | null): Promise<VectorIndex> {
    const opened = new VectorIndex(file, parts.graph, parts.rows, source.dims, options.scalar ?? 'f32', source, parts.seq, rebuilt);
    opened.expansion = options.expansion ?? DEFAULT_EXPANSION;
    for (const _ of opened.replay()) await new Promise((resolve) => setImmediate(resolve));
    return opened;
  }

  /** Builds a checkpoint from SQLite and writes its files (not on a server's event loop: see openWith). The log is left as it is. */
  static writeBuilt(file: string, source: EmbeddingSource, scalar: IndexScalar): { seq: number; count: number } {
    const { index, rows, seq } = VectorIndex.build(file, source, scalar);
    VectorIndex.write(file, index, rows, seq, source.dims, scalar);
    return { seq, count: Number(index.size()) };
  }

  /** The position a checkpoint's meta file says it holds, if it is one this configuration could open; null: none. */
  static checkpointPosition(file: string, scalar: IndexScalar): number | null {
    const meta = VectorIndex.readMeta(file);
    return meta?.format === 'marquee-index/3' && meta.scalar === scalar && Number.isSafeInteger(meta.seq) ? meta.seq : null;
  }

  private static readMeta(file: string): IndexMeta | null {
    try {
      return JSON.parse(readFileSync(`${file}.json`, 'utf8')) as IndexMeta;
    } catch {
      return null;
    }
  }

  /** The checkpoint's meta, or why its files cannot be used. */
  private static usableMeta(file: string, source: EmbeddingSource, scalar: IndexScalar): IndexMeta | string {
    if (!existsSync(file)) return 'missing';
    const meta = VectorIndex.readMeta(file);
    if (!meta) return 'no readable meta file';
    if (meta.format !== 'marquee-index/3') return `format ${String(meta.format)}`;
    if (meta.dims !== source.dims) return `${meta.dims} dims, the model has ${source.dims}`;
    if (meta.scalar !== scalar) return `stored as ${meta.scalar}, configured ${scalar}`;
    if (meta.seq > source.lastChange()) return 'newer than the database';
    // The log it would replay from lacks the changes between it and the prune: never used stale.
    const pruned = source.prunedThrough();
    if (meta.seq < pruned) return `older than the change log (holds changes up to ${meta.seq}, the log starts after ${pruned})`;
    if (meta.bytes !== undefined && statSync(file).size !== meta.bytes) return 'corrupt';
    return meta;
  }

  /** The checkpoint's files read into memory, or why they cannot be used. */
  private static load(file: string, source: EmbeddingSource, scalar: IndexScalar): Checkpoint | string {
    const meta = VectorIndex.usableMeta(file, source, scalar);
    if (typeof meta === 'string') return meta;
    try {
      const index = newUsearchIndex(source.dims, scalar);
      index.load(file);
      const rows = QuantizedRows.read(rowsPath(file), source.dims);
      return { graph: new LoadedGraph(index), rows, seq: meta.seq };
    } catch {
      return 'corrupt';
    }
  }

  /** The checkpoint's graph file mapped and its rows read a piece at a time (the thread free between pieces), or why they cannot be used. */
  private static async map(file: string, source: EmbeddingSource, scalar: IndexScalar): Promise<Checkpoint | string> {
    const meta = VectorIndex.usableMeta(file, source, scalar);
    if (typeof meta === 'string') return meta;
    try {
      const graph = MappedGraph.view(file, source.dims, scalar);
      const rows = await QuantizedRows.readInPieces(rowsPath(file), source.dims);
      return { graph, rows, seq: meta.seq };
    } catch {
      return 'corrupt';
    }
  }

  private static build(file: string, source: EmbeddingSource, scalar: IndexScalar): { index: UsearchIndex; rows: QuantizedRows; seq: number } {
    // The log position first: a change committed while the embeddings are read is replayed at the next open.
    const seq = source.lastChange();
    const index = newUsearchIndex(source.dims, scalar);
    const rows = new QuantizedRows(source.dims);
    for (const batch of source.batches(BUILD_BATCH)) {
      addBatch(index, batch.keys, batch.vectors, source.dims);
      batch.keys.forEach((key, i) => rows.set(Number(key), batch.vectors.subarray(i * source.dims, (i + 1) * source.dims)));
    }
    mkdirSync(dirname(file), { recursive: true });
    return { index, rows, seq };
  }

  /**
   * Applies the changes logged after this index's position, which then moves to the log's end
   * (`replayed` counts them), pausing after every REPLAY_PIECE.
   */
  private *replay(): Generator<void> {
    const upTo = this.source.lastChange();
    let applied = 0;
    for (const { key, vector } of this.source.changedSince(this.seq)) {
      if (vector) this.add(key, vector);
      else this.remove(key);
      if (++applied % REPLAY_PIECE === 0) yield;
    }
    this.seq = upTo;
    this.replayed = applied;
  }

  /**
   * Writes the files as they are now (each atomically, the meta last) and drops the log rows up to
   * the position the index was opened at. The meta names that position, not the log's end: live
   * changes since then are in memory and in the log, and the next open replays them again, which
   * changes nothing where they already are. A crash between the files is as safe, for the same reason.
   * Only an index read whole (open) is saved; a mapped one's changes stay in the log.
   */
  private checkpoint(): void {
    const whole = this.graph.whole();
    if (!whole) throw new Error('a mapped graph is not saved: its changes stay in the log until the next build');
    const seq = this.seq;
    VectorIndex.write(this.file, whole, this.rows, seq, this.dims, this.scalar);
    this.source.pruneChanges(seq);
  }

  /** A checkpoint's files, each written atomically, the meta (naming the change they hold up to) last. */
  private static write(file: string, index: UsearchIndex, rows: QuantizedRows, seq: number, dims: number, scalar: IndexScalar): void {
    const tmp = temporaryPath(file);
    try {
      index.save(tmp);
      publishFile(tmp, file);
    } finally {
      rmSync(tmp, { force: true });
    }
    writeAtomically(rowsPath(file), (fd) => rows.write(fd));
    const meta: IndexMeta = { format: 'marquee-index/3', dims, scalar, count: Number(index.size()), seq, bytes: statSync(file).size };
    writeAtomically(`${file}.json`, JSON.stringify(meta));
  }

  /** The nearest `k` of many queries at once, on `threads` threads, each search walking with `expansion` (at least k). */
  searchMany(queries: Float32Array[], k: number, threads: number, expansion = this.expansion): Neighbor[][] {
    const count = Math.min(k, this.size);
    if (count === 0 || queries.length === 0) return queries.map(() => []);
    return this.graph.searchMany(queries, Math.min(Math.max(count, expansion), this.size), threads).map((matches) => neighbors(matches, count));
  }

  /** The nearest `k` by the HNSW graph (approximate; distances exact only when stored as f32). */
  search(query: Float32Array, k: number): Neighbor[] {
    const count = Math.min(k, this.size);
    if (count === 0) return [];
    return neighbors(this.graph.search(query, Math.min(Math.max(count, this.expansion), this.size)), count);
  }
}

/** The first `count` of a graph's matches as neighbours (Euclidean distances). */
function neighbors(matches: GraphMatches, count: number): Neighbor[] {
  const out: Neighbor[] = [];
  for (let i = 0; i < Math.min(count, matches.keys.length); i++) {
    out.push({ key: Number(matches.keys[i]), distance: Math.sqrt(Math.max(0, matches.distances[i]!)) });
  }
  return out;
}
