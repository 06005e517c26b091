import type Database from 'better-sqlite3';
import type { EmbeddingSource } from '../../search/vector-index.js';
import type { EmbeddingFollower, EmbeddingSet, EmbeddingSnapshot, EmbeddingSpace, EmbeddingStore, MissingEmbedding } from '../embeddings.js';
import { type Db, inWriteTransaction } from './db.js';

/** The most change-log rows one statement of a prune deletes. */
const PRUNE_PIECE = 2_000;

/** EmbeddingStore on SQLite; the *Sync methods are for State's transactions across stores, and for tests. */
export class SqliteEmbeddingStore implements EmbeddingStore {
  private readonly getOne: Database.Statement<[string, string, number], { vector: Buffer }>;
  private readonly getSome: Database.Statement<[string, string, string], { key: number; vector: Buffer }>;

  constructor(private readonly db: Db) {
    this.getOne = db.prepare('SELECT vector FROM embeddings WHERE model_version = ? AND precision = ? AND poster_key = ?');
    this.getSome = db.prepare(
      `SELECT poster_key AS key, vector FROM embeddings
       WHERE model_version = ? AND precision = ? AND poster_key IN (SELECT value FROM json_each(?))`,
    );
  }

  /** The database file, for a thread that reads it through a connection of its own (search/index-build.ts). */
  get dbFile(): string {
    return this.db.name;
  }

  /** The live change log, read synchronously, and the file for a build thread: SQLite needs no copy. */
  async snapshot(space: EmbeddingSpace, dims: number): Promise<EmbeddingSnapshot> {
    return { source: this.source(space, dims), reader: async () => ({ dbFile: this.dbFile }) };
  }

  /** Only the process that holds the data dir writes its database: nothing to follow. */
  async follow(_space: EmbeddingSpace, _from: number, _apply: (keys: number[]) => Promise<void>): Promise<EmbeddingFollower | null> {
    return null;
  }

  async latestChange(): Promise<string | null> {
    return null;
  }

  /** One variant's embeddings as what its vector index is derived from. */
  source(space: EmbeddingSpace, dims: number): EmbeddingSource {
    return {
      dims,
      lastChange: () => this.lastChange(),
      changedSince: (seq) => this.changedSince(space, seq),
      batches: (size) => this.batches(space, dims, size),
      pruneChanges: (upTo) => this.pruneChanges(space, upTo),
      pruneChangesInPieces: (upTo) => this.pruneChangesInPieces(space, upTo),
      changesSince: (seq) => this.changesSince(space, seq),
      prunedThrough: () => this.prunedThrough(space),
    };
  }

  async count(space: EmbeddingSpace): Promise<number> {
    return (
      this.db.prepare('SELECT count(*) AS n FROM embeddings INDEXED BY embeddings_keys WHERE model_version = ? AND precision = ?').get(space.version, space.precision) as {
        n: number;
      }
    ).n;
  }

  async embeddedKeys(space: EmbeddingSpace): Promise<number[]> {
    return this.db
      .prepare('SELECT p.key FROM posters p JOIN embeddings e ON e.poster_key = p.key AND e.model_version = ? AND e.precision = ? ORDER BY p.key')
      .pluck()
      .all(space.version, space.precision) as number[];
  }

  async missing(space: EmbeddingSpace): Promise<MissingEmbedding[]> {
    return this.missingSync(space);
  }

  /** missing, for tests. */
  missingSync(space: EmbeddingSpace): MissingEmbedding[] {
    return this.missingQuery().all(space.version, space.precision, -1, Number.MAX_SAFE_INTEGER) as MissingEmbedding[];
  }

  /**
   * As missing, the catalog read a page of posters at a time with the thread free between pages (a
   * server's activation: at 200,000 posters the whole query held it 100 ms).
   */
  async missingInPages(space: EmbeddingSpace, pageSize = 10_000): Promise<MissingEmbedding[]> {
    const pageEnd = this.db.prepare(`SELECT key FROM posters WHERE key > ? ORDER BY key LIMIT 1 OFFSET ${pageSize - 1}`).pluck();
    const query = this.missingQuery();
    const out: MissingEmbedding[] = [];
    for (let after = -1; ; await new Promise((resolve) => setImmediate(resolve))) {
      const end = (pageEnd.get(after) as number | undefined) ?? Number.MAX_SAFE_INTEGER;
      out.push(...(query.all(space.version, space.precision, after, end) as MissingEmbedding[]));
      if (end === Number.MAX_SAFE_INTEGER) return out;
      after = end;
    }
  }

  /** The posters with keys in (after, through] that have no embedding under a variant. */
  private missingQuery(): Database.Statement {
    return this.db.prepare(
      `SELECT p.key AS key, p.image_path AS imagePath, p.pixel_sha256 AS pixelSha256 FROM posters p
       LEFT JOIN embeddings e INDEXED BY embeddings_keys ON e.poster_key = p.key AND e.model_version = ? AND e.precision = ?
       WHERE p.key > ? AND p.key <= ? AND e.poster_key IS NULL ORDER BY p.key`,
    );
  }

  async putMany(space: EmbeddingSpace, rows: { key: number; vector: Float32Array }[]): Promise<void> {
    this.putManySync(space, rows);
  }

  /** putMany, inside a transaction of the caller's (State.savePoster), or for tests and benchmarks. */
  putManySync(space: EmbeddingSpace, rows: { key: number; vector: Float32Array }[]): void {
    const insert = this.db.prepare('INSERT OR REPLACE INTO embeddings (model_version, precision, poster_key, vector) VALUES (?, ?, ?, ?)');
    inWriteTransaction(this.db, () => {
      for (const row of rows) {
        insert.run(space.version, space.precision, row.key, Buffer.from(row.vector.buffer, row.vector.byteOffset, row.vector.byteLength));
      }
    });
  }

  async deleteSpace(space: EmbeddingSpace): Promise<void> {
    inWriteTransaction(this.db, () => {
      this.db.prepare('DELETE FROM embeddings WHERE model_version = ? AND precision = ?').run(space.version, space.precision);
      this.pruneChanges(space, this.lastChange());
    });
  }

  async get(space: EmbeddingSpace, key: number): Promise<Float32Array | null> {
    return this.getSync(space, key);
  }

  /** get, for the index's change log and for tests. */
  getSync(space: EmbeddingSpace, key: number): Float32Array | null {
    const row = this.getOne.get(space.version, space.precision, key);
    return row ? asFloat32(row.vector) : null;
  }

  async getMany(space: EmbeddingSpace, keys: number[]): Promise<Map<number, Float32Array>> {
    return this.getManySync(space, keys);
  }

  /** getMany, for tests and benchmarks. */
  getManySync(space: EmbeddingSpace, keys: number[]): Map<number, Float32Array> {
    const out = new Map<number, Float32Array>();
    if (keys.length === 0) return out;
    for (const row of this.getSome.all(space.version, space.precision, JSON.stringify(keys))) out.set(row.key, asFloat32(row.vector));
    return out;
  }

  /** The last change recorded to any embedding (migrations/008): what a checkpoint of the index holds up to. */
  lastChange(): number {
    // AUTOINCREMENT's counter, which pruning the log does not reset (max(seq) would).
    const row = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'embedding_changes'").get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /** How many changes to this variant's embeddings the log holds after `seq` (an index seek and a count, no vector read). */
  changesSince(space: EmbeddingSpace, seq: number): number {
    return (
      this.db.prepare('SELECT count(*) AS n FROM embedding_changes WHERE model_version = ? AND precision = ? AND seq > ?').get(space.version, space.precision, seq) as {
        n: number;
      }
    ).n;
  }

  /** The posters whose embedding under this variant changed after `seq`, each with its vector now (null: gone). */
  *changedSince(space: EmbeddingSpace, seq: number): Generator<{ key: number; vector: Float32Array | null }> {
    const keys = this.db
      .prepare('SELECT DISTINCT poster_key AS key FROM embedding_changes WHERE model_version = ? AND precision = ? AND seq > ? ORDER BY poster_key')
      .pluck()
      .all(space.version, space.precision, seq) as number[];
    for (const key of keys) yield { key, vector: this.getSync(space, key) };
  }

  /**
   * Forgets the changes a saved checkpoint of this variant's index holds, and those of variants that
   * are gone; records how far the log now starts (migrations/013), so that a checkpoint older than
   * that is rebuilt rather than brought up to date from a log that lacks its changes.
   */
  pruneChanges(space: EmbeddingSpace, upTo: number): void {
    inWriteTransaction(this.db, () => {
      for (const _ of this.pruneSteps(space, upTo));
    });
  }

  /**
   * As pruneChanges, a piece of the log at a time with the thread free between pieces (a server's:
   * at 200,000 posters the whole prune held it 150 ms). The start is recorded first, so a prune cut
   * short leaves only rows no checkpoint will replay.
   */
  async pruneChangesInPieces(space: EmbeddingSpace, upTo: number): Promise<void> {
    for (const _ of this.pruneSteps(space, upTo)) await new Promise((resolve) => setImmediate(resolve));
  }

  /** The prune, a statement of at most PRUNE_PIECE rows per step. */
  private *pruneSteps(space: EmbeddingSpace, upTo: number): Generator<void> {
    this.db
      .prepare(
        `INSERT INTO embedding_changes_pruned (model_version, precision, through_seq) VALUES (?, ?, ?)
         ON CONFLICT (model_version, precision) DO UPDATE SET through_seq = max(through_seq, excluded.through_seq)`,
      )
      .run(space.version, space.precision, upTo);
    const piece = this.db.prepare(
      `DELETE FROM embedding_changes WHERE seq IN
         (SELECT seq FROM embedding_changes WHERE model_version = ? AND precision = ? AND seq <= ? LIMIT ${PRUNE_PIECE})`,
    );
    const gone = this.db.prepare('SELECT 1 FROM model_variants WHERE version = ? AND precision = ?');
    for (const variant of [space, ...this.loggedVariants()]) {
      const through = variant === space ? upTo : Number.MAX_SAFE_INTEGER;
      if (variant !== space && gone.get(variant.version, variant.precision)) continue;
      while (piece.run(variant.version, variant.precision, through).changes === PRUNE_PIECE) yield;
    }
  }

  /** The variants with rows in the change log, one index seek each (not a scan of the log). */
  private loggedVariants(): EmbeddingSpace[] {
    const next = this.db.prepare(
      `SELECT model_version AS version, precision FROM embedding_changes INDEXED BY embedding_changes_variant
       WHERE (model_version, precision) > (?, ?) ORDER BY model_version, precision LIMIT 1`,
    );
    const variants: EmbeddingSpace[] = [];
    for (let at = next.get('', '') as EmbeddingSpace | undefined; at; at = next.get(at.version, at.precision) as EmbeddingSpace | undefined) variants.push(at);
    return variants;
  }

  /** The last change pruned from this variant's log: a checkpoint holding less cannot be replayed up to date. */
  prunedThrough(space: EmbeddingSpace): number {
    const row = this.db.prepare('SELECT through_seq AS seq FROM embedding_changes_pruned WHERE model_version = ? AND precision = ?').get(space.version, space.precision) as
      | { seq: number }
      | undefined;
    return row?.seq ?? 0;
  }

  /** Every embedding of a variant in key order, a batch at a time, without holding them all. */
  *batches(space: EmbeddingSpace, dims: number, size: number): Generator<EmbeddingSet> {
    const rows = this.db
      .prepare('SELECT poster_key AS key, vector FROM embeddings WHERE model_version = ? AND precision = ? ORDER BY poster_key')
      .iterate(space.version, space.precision) as IterableIterator<{ key: number; vector: Buffer }>;
    let keys = new BigUint64Array(size);
    let vectors = new Float32Array(size * dims);
    let n = 0;
    for (const row of rows) {
      keys[n] = BigInt(row.key);
      vectors.set(checked(row, dims), n * dims);
      if (++n === size) {
        yield { keys, vectors, dims };
        keys = new BigUint64Array(size);
        vectors = new Float32Array(size * dims);
        n = 0;
      }
    }
    if (n > 0) yield { keys: keys.subarray(0, n), vectors: vectors.subarray(0, n * dims), dims };
  }

  async load(space: EmbeddingSpace, dims: number): Promise<EmbeddingSet> {
    return this.loadSync(space, dims);
  }

  /** load, for tests and benchmarks. */
  loadSync(space: EmbeddingSpace, dims: number): EmbeddingSet {
    const rows = this.db
      .prepare('SELECT poster_key AS key, vector FROM embeddings WHERE model_version = ? AND precision = ? ORDER BY poster_key')
      .all(space.version, space.precision) as { key: number; vector: Buffer }[];
    const keys = new BigUint64Array(rows.length);
    const vectors = new Float32Array(rows.length * dims);
    rows.forEach((row, i) => {
      keys[i] = BigInt(row.key);
      vectors.set(checked(row, dims), i * dims);
    });
    return { keys, vectors, dims };
  }
}

/** A stored row's vector, refused when it does not have the model's dims. */
function checked(row: { key: number; vector: Buffer }, dims: number): Float32Array {
  if (row.vector.byteLength !== dims * 4) throw new Error(`embedding of poster ${row.key} has ${row.vector.byteLength / 4} dims, expected ${dims}`);
  return asFloat32(row.vector);
}

function asFloat32(bytes: Buffer): Float32Array {
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  return new Float32Array(Uint8Array.prototype.slice.call(bytes).buffer);
}
