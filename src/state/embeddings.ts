import type { Db } from './db.js';

/** All embeddings of one model version, in key order, as one contiguous matrix. */
export interface EmbeddingSet {
  keys: BigUint64Array;
  vectors: Float32Array;
  dims: number;
}

export class EmbeddingStore {
  constructor(private readonly db: Db) {}

  count(version: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM embeddings WHERE model_version = ?').get(version) as { n: number }).n;
  }

  /** Posters with no embedding yet for this version. */
  missing(version: string): { key: number; imagePath: string }[] {
    return this.db
      .prepare(
        `SELECT p.key AS key, p.image_path AS imagePath FROM posters p
         LEFT JOIN embeddings e ON e.poster_key = p.key AND e.model_version = ?
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
    this.db.prepare('DELETE FROM embeddings WHERE model_version = ?').run(version);
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
