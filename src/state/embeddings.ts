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
 * The embeddings as the server uses them: the rows, and what a vector index and the threads that
 * build indexes and maps read synchronously, SQLite's change log (`source`) and file (`dbFile`).
 * On PostgreSQL the rows exist (postgres/embeddings.ts) and ChangeFollower replaces those two
 * (docs/cluster-plan.md).
 */
export interface EmbeddingStore extends EmbeddingRows {
  /** The database file, for a thread that reads it through a connection of its own (search/index-build.ts). */
  readonly dbFile: string;
  /** One variant's embeddings as what its vector index is derived from. */
  source(space: EmbeddingSpace, dims: number): EmbeddingSource;
}
