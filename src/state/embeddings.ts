import type Database from 'better-sqlite3';
import type { EmbeddingSource } from '../search/vector-index.js';
import type { Db } from './db.js';

/** Embeddings of one model version, in key order, as one contiguous matrix. */
export interface EmbeddingSet {
  keys: BigUint64Array;
  vectors: Float32Array;
  dims: number;
}

export class EmbeddingStore {
  private readonly getOne: Database.Statement<[string, number], { vector: Buffer }>;
  private readonly getSome: Database.Statement<[string, string], { key: number; vector: Buffer }>;

  constructor(private readonly db: Db) {
    this.getOne = db.prepare('SELECT vector FROM embeddings WHERE model_version = ? AND poster_key = ?');
    this.getSome = db.prepare(
      'SELECT poster_key AS key, vector FROM embeddings WHERE model_version = ? AND poster_key IN (SELECT value FROM json_each(?))',
    );
  }

  /** One version's embeddings as what its vector index is derived from. */
  source(version: string, dims: number): EmbeddingSource {
    return {
      dims,
      lastChange: () => this.lastChange(),
      changedSince: (seq) => this.changedSince(version, seq),
      batches: (size) => this.batches(version, dims, size),
      pruneChanges: (upTo) => this.pruneChanges(version, upTo),
    };
  }

  count(version: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM embeddings WHERE model_version = ?').get(version) as { n: number }).n;
  }

  /** Posters with no embedding yet for this version. */
  missing(version: string): { key: number; imagePath: string }[] {
    return this.db
      .prepare(
        `SELECT p.key AS key, p.image_path AS imagePath FROM posters p
         LEFT JOIN embeddings e INDEXED BY embeddings_keys ON e.poster_key = p.key AND e.model_version = ?
         WHERE e.poster_key IS NULL ORDER BY p.key`,
      )
      .all(version) as { key: number; imagePath: string }[];
  }

  putMany(version: string, rows: { key: number; vector: Float32Array }[]): void {
    const insert = this.db.prepare('INSERT OR REPLACE INTO embeddings (model_version, poster_key, vector) VALUES (?, ?, ?)');
    this.db.transaction(() => {
      for (const row of rows) insert.run(version, row.key, Buffer.from(row.vector.buffer, row.vector.byteOffset, row.vector.byteLength));
    })();
  }

  deleteVersion(version: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM embeddings WHERE model_version = ?').run(version);
      this.db.prepare('DELETE FROM embedding_changes WHERE model_version = ?').run(version);
    })();
  }

  /** One poster's embedding under a version; null if it has none. */
  get(version: string, key: number): Float32Array | null {
    const row = this.getOne.get(version, key);
    return row ? asFloat32(row.vector) : null;
  }

  /** Some posters' embeddings under a version, in one query; those without one are left out. */
  getMany(version: string, keys: number[]): Map<number, Float32Array> {
    const out = new Map<number, Float32Array>();
    if (keys.length === 0) return out;
    for (const row of this.getSome.all(version, JSON.stringify(keys))) out.set(row.key, asFloat32(row.vector));
    return out;
  }

  /** The last change recorded to any embedding (migrations/008): what a checkpoint of the index holds up to. */
  lastChange(): number {
    // AUTOINCREMENT's counter, which pruning the log does not reset (max(seq) would).
    const row = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'embedding_changes'").get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /** The posters whose embedding under this version changed after `seq`, each with its vector now (null: gone). */
  *changedSince(version: string, seq: number): Generator<{ key: number; vector: Float32Array | null }> {
    const keys = this.db
      .prepare('SELECT DISTINCT poster_key AS key FROM embedding_changes WHERE model_version = ? AND seq > ? ORDER BY poster_key')
      .pluck()
      .all(version, seq) as number[];
    for (const key of keys) yield { key, vector: this.get(version, key) };
  }

  /** Forgets the changes a saved checkpoint of this version's index holds, and those of versions that are gone. */
  pruneChanges(version: string, upTo: number): void {
    this.db.prepare('DELETE FROM embedding_changes WHERE model_version = ? AND seq <= ?').run(version, upTo);
    this.db.prepare('DELETE FROM embedding_changes WHERE model_version NOT IN (SELECT version FROM model_versions)').run();
  }

  /** Every embedding of a version in key order, a batch at a time, without holding them all. */
  *batches(version: string, dims: number, size: number): Generator<EmbeddingSet> {
    const rows = this.db
      .prepare('SELECT poster_key AS key, vector FROM embeddings WHERE model_version = ? ORDER BY poster_key')
      .iterate(version) as IterableIterator<{ key: number; vector: Buffer }>;
    let keys = new BigUint64Array(size);
    let vectors = new Float32Array(size * dims);
    let n = 0;
    for (const row of rows) {
      if (row.vector.byteLength !== dims * 4) throw new Error(`embedding of poster ${row.key} has ${row.vector.byteLength / 4} dims, expected ${dims}`);
      keys[n] = BigInt(row.key);
      vectors.set(asFloat32(row.vector), n * dims);
      if (++n === size) {
        yield { keys, vectors, dims };
        keys = new BigUint64Array(size);
        vectors = new Float32Array(size * dims);
        n = 0;
      }
    }
    if (n > 0) yield { keys: keys.subarray(0, n), vectors: vectors.subarray(0, n * dims), dims };
  }

  load(version: string, dims: number): EmbeddingSet {
    const rows = this.db
      .prepare('SELECT poster_key AS key, vector FROM embeddings WHERE model_version = ? ORDER BY poster_key')
      .all(version) as { key: number; vector: Buffer }[];
    const keys = new BigUint64Array(rows.length);
    const vectors = new Float32Array(rows.length * dims);
    rows.forEach((row, i) => {
      if (row.vector.byteLength !== dims * 4) throw new Error(`embedding of poster ${row.key} has ${row.vector.byteLength / 4} dims, expected ${dims}`);
      keys[i] = BigInt(row.key);
      vectors.set(asFloat32(row.vector), i * dims);
    });
    return { keys, vectors, dims };
  }
}

function asFloat32(bytes: Buffer): Float32Array {
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  return new Float32Array(Uint8Array.prototype.slice.call(bytes).buffer);
}
