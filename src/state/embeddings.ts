import type { EmbeddingSource } from '../search/vector-index.js';
import type { Precision } from './models.js';

/** Embeddings of one model variant, in key order, as one contiguous matrix. */
export interface EmbeddingSet {
  keys: BigUint64Array;
  vectors: Float32Array;
  dims: number;
}

/** A poster that has no embedding under a variant yet. */
export interface MissingEmbedding {
  key: number;
  imagePath: string;
  pixelSha256: string;
}

/** Whose embeddings: one variant of a model version (a ModelVersion is one). */
export interface EmbeddingSpace {
  version: string;
  precision: Precision;
}

/** Each model variant's embedding of each poster. */
export interface EmbeddingRows {
  count(space: EmbeddingSpace): Promise<number>;
  /** The keys of the posters that have an embedding in this space, in key order. */
  embeddedKeys(space: EmbeddingSpace): Promise<number[]>;
  /** Posters with no embedding yet under this variant. */
  missing(space: EmbeddingSpace): Promise<MissingEmbedding[]>;
  /** As missing, with the thread free while it reads (SQLite reads a page of posters at a time, the thread free between pages). */
  missingInPages(space: EmbeddingSpace, pageSize?: number): Promise<MissingEmbedding[]>;
  putMany(space: EmbeddingSpace, rows: { key: number; vector: Float32Array }[]): Promise<void>;
  /** Drops a variant's embeddings (and, where it keeps one per variant, its change log), to embed the catalog again. */
  deleteSpace(space: EmbeddingSpace): Promise<void>;
  /** One poster's embedding under a variant; null if it has none. */
  get(space: EmbeddingSpace, key: number): Promise<Float32Array | null>;
  /** Some posters' embeddings under a variant, in one query; those without one are left out. */
  getMany(space: EmbeddingSpace, keys: number[]): Promise<Map<number, Float32Array>>;
  /** Every embedding of a variant at once, in key order. */
  load(space: EmbeddingSpace, dims: number): Promise<EmbeddingSet>;
}

/**
 * What a thread of its own (an index build) reads one variant's embeddings from: SQLite's file,
 * through a connection of its own, or the rows already read, in memory the thread shares.
 */
export type EmbeddingReader = { dbFile: string } | { rows: EmbeddingSet; lastChange: number };

/**
 * One variant's embeddings as a vector index is derived from them (`source`), and as a build thread
 * reads them (`reader`, asked for only when the index is built).
 */
export interface EmbeddingSnapshot {
  source: EmbeddingSource;
  reader(): Promise<EmbeddingReader>;
  /** The rows read are no longer needed (the index is open): a snapshot's memory and its transaction are freed. */
  release?(): void;
}

/** The writes of other processes to one variant's embeddings, followed (PostgreSQL: ChangeFollower). */
export interface EmbeddingFollower {
  /** Whether the follower gets past the change `id` (a write's Marquee-Change) within `timeoutMs`. */
  waitFor(id: bigint, timeoutMs: number): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * The embeddings as the server uses them: the rows, what a vector index is derived from, and the
 * other servers' writes followed. SQLite's source is its change log, read synchronously, and its
 * writer the one process that holds the data dir (so it has nothing to follow); PostgreSQL's is a
 * snapshot of the rows and the log's positions, its writers any server, followed from the snapshot on.
 */
export interface EmbeddingStore extends EmbeddingRows {
  /**
   * `since`: the position of the checkpoint the index will open from, when there is one. PostgreSQL
   * then reads only what changed after it (a restart at a million posters must not read every row),
   * and every row only if the index is built after all (reader()).
   */
  snapshot(space: EmbeddingSpace, dims: number, since?: number | null): Promise<EmbeddingSnapshot>;
  /**
   * Calls `apply` with the posters whose embedding in this space another process changed after
   * position `from` (a snapshot's lastChange), each once a change commits; null where no other process writes.
   */
  follow(space: EmbeddingSpace, from: number, apply: (keys: number[]) => Promise<void>): Promise<EmbeddingFollower | null>;
  /**
   * The id of the latest change to some posters' embeddings or metadata (its writer's transaction),
   * which a server has applied once its follower is past it; null where one process writes (nothing to wait for).
   */
  latestChange(keys: number[]): Promise<string | null>;
}
