import { RowsSource } from '../embedding-snapshot.js';
import type { EmbeddingFollower, EmbeddingSet, EmbeddingSnapshot, EmbeddingSpace, EmbeddingStore, MissingEmbedding } from '../embeddings.js';
import { ChangeFollower } from './change-follower.js';
import { type Client, type Pool, transaction } from './db.js';

/** Rows a load reads at a time. */
const PAGE = 10_000;

/** Embeddings on PostgreSQL (float32 little-endian in BYTEA); every write logged with its transaction id (migrations/postgres/002). */
export class PostgresEmbeddingStore implements EmbeddingStore {
  constructor(
    private readonly pool: Pool,
    /** Where the database is, for the follower's connection of its own. */
    private readonly url: string,
  ) {}

  /**
   * The variant's rows and each poster's latest change, read in one snapshot whose horizon is the
   * source's position: the follower starts there. The rows are in memory a build thread shares.
   * Since a checkpoint's position, only the posters changed after it are read, in a transaction held
   * open until the snapshot is released, so that a build (the checkpoint unusable after all) reads
   * every row in the same snapshot.
   */
  async snapshot(space: EmbeddingSpace, dims: number, since: number | null = null): Promise<EmbeddingSnapshot> {
    const client = await this.pool.connect();
    let open = true;
    const end = async () => {
      if (!open) return;
      open = false;
      await client.query('COMMIT').catch(() => {});
      client.release();
    };
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const horizon = Number((await client.query<{ h: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h')).rows[0]!.h);
      // A change by transaction t is at position t + 1: after `since` means t >= since. The order is the
      // column's (c.txid), not the text the query answers, in which "970" sorts after "1044".
      const { rows: log } = await client.query<{ key: string; txid: string }>(
        `SELECT DISTINCT ON (c.poster_key) c.poster_key AS key, c.txid::text AS txid FROM embedding_changes c
         WHERE c.model_version = $1 AND c.precision = $2 AND ($3::text IS NULL OR c.txid >= $3::xid8) ORDER BY c.poster_key, c.txid DESC`,
        [space.version, space.precision, since === null ? null : String(since)],
      );
      const changed = new Map(log.map((r) => [Number(r.key), Number(r.txid) + 1]));
      let rows = await loadRows(client, space, dims, true, since === null ? null : [...changed.keys()]);
      const source = new RowsSource(rows, horizon, changed);
      if (since === null) await end();
      return {
        source,
        reader: async () => {
          if (open) {
            rows = await loadRows(client, space, dims, true, null);
            source.holdRows(rows);
            await end();
          }
          return { rows, lastChange: horizon };
        },
        release: () => {
          source.release();
          void end();
        },
      };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      open = false;
      client.release();
      throw error;
    }
  }

  async follow(space: EmbeddingSpace, from: number, apply: (keys: number[]) => Promise<void>): Promise<EmbeddingFollower> {
    return ChangeFollower.start(this.pool, {
      url: this.url,
      from: BigInt(from),
      onChanges: async (changes) => {
        const keys = [...new Set(changes.filter((c) => c.version === space.version && c.precision === space.precision).map((c) => c.key))];
        if (keys.length > 0) await apply(keys);
      },
    });
  }

  async latestChange(keys: number[]): Promise<string | null> {
    if (keys.length === 0) return null;
    const { rows } = await this.pool.query<{ txid: string }>('SELECT c.txid::text AS txid FROM embedding_changes c WHERE c.poster_key = ANY($1::bigint[]) ORDER BY c.txid DESC LIMIT 1', [keys]);
    return rows[0]?.txid ?? null;
  }

  async count(space: EmbeddingSpace): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM embeddings WHERE model_version = $1 AND precision = $2', [space.version, space.precision]);
    return Number(rows[0]!.n);
  }

  async embeddedKeys(space: EmbeddingSpace): Promise<number[]> {
    const { rows } = await this.pool.query<{ key: string }>(
      'SELECT p.key FROM posters p JOIN embeddings e ON e.poster_key = p.key AND e.model_version = $1 AND e.precision = $2 ORDER BY p.key',
      [space.version, space.precision],
    );
    return rows.map((r) => Number(r.key));
  }

  async missing(space: EmbeddingSpace): Promise<MissingEmbedding[]> {
    const { rows } = await this.pool.query<{ key: string; imagePath: string; pixelSha256: string }>(
      `SELECT p.key, p.image_path AS "imagePath", p.pixel_sha256 AS "pixelSha256" FROM posters p
       LEFT JOIN embeddings e ON e.poster_key = p.key AND e.model_version = $1 AND e.precision = $2
       WHERE e.poster_key IS NULL ORDER BY p.key`,
      [space.version, space.precision],
    );
    return rows.map((r) => ({ key: Number(r.key), imagePath: r.imagePath, pixelSha256: r.pixelSha256 }));
  }

  /** missing: the query does not hold this thread, so there is nothing to page for. */
  async missingInPages(space: EmbeddingSpace): Promise<MissingEmbedding[]> {
    return this.missing(space);
  }

  async putMany(space: EmbeddingSpace, rows: { key: number; vector: Float32Array }[]): Promise<void> {
    if (rows.length === 0) return;
    await transaction(this.pool, (client) => putEmbeddings(client, space, rows));
  }

  async deleteSpace(space: EmbeddingSpace): Promise<void> {
    await this.pool.query('DELETE FROM embeddings WHERE model_version = $1 AND precision = $2', [space.version, space.precision]);
  }

  async get(space: EmbeddingSpace, key: number): Promise<Float32Array | null> {
    return (await this.getMany(space, [key])).get(key) ?? null;
  }

  async getMany(space: EmbeddingSpace, keys: number[]): Promise<Map<number, Float32Array>> {
    const out = new Map<number, Float32Array>();
    if (keys.length === 0) return out;
    const { rows } = await this.pool.query<{ key: string; vector: Buffer }>(
      'SELECT poster_key AS key, vector FROM embeddings WHERE model_version = $1 AND precision = $2 AND poster_key = ANY($3::bigint[])',
      [space.version, space.precision, keys],
    );
    for (const row of rows) out.set(Number(row.key), asFloat32(row.vector));
    return out;
  }

  async load(space: EmbeddingSpace, dims: number): Promise<EmbeddingSet> {
    return loadRows(this.pool, space, dims, false);
  }
}

/** Some posters' embeddings written, in the caller's transaction (PostgresState.savePoster, putMany). */
export async function putEmbeddings(client: Client, space: EmbeddingSpace, rows: { key: number; vector: Float32Array }[]): Promise<void> {
  await client.query(
    `INSERT INTO embeddings (model_version, precision, poster_key, vector) SELECT $1, $2, unnest($3::bigint[]), unnest($4::bytea[])
     ON CONFLICT (model_version, precision, poster_key) DO UPDATE SET vector = excluded.vector`,
    [space.version, space.precision, rows.map((r) => r.key), rows.map((r) => Buffer.from(r.vector.buffer, r.vector.byteOffset, r.vector.byteLength))],
  );
}

/**
 * Every embedding of a variant, or those of the keys given, in key order, a page at a time
 * (`shared`: in memory a worker thread can share).
 */
async function loadRows(client: Pool | Client, space: EmbeddingSpace, dims: number, shared: boolean, only: number[] | null = null): Promise<EmbeddingSet> {
  const keys: number[] = [];
  const parts: Float32Array[] = [];
  const take = (rows: { key: string; vector: Buffer }[]) => {
    for (const row of rows) {
      if (row.vector.byteLength !== dims * 4) throw new Error(`embedding of poster ${row.key} has ${row.vector.byteLength / 4} dims, expected ${dims}`);
      keys.push(Number(row.key));
      parts.push(asFloat32(row.vector));
    }
  };
  if (only) {
    const wanted = [...only].sort((a, b) => a - b);
    for (let start = 0; start < wanted.length; start += PAGE) {
      const { rows } = await client.query<{ key: string; vector: Buffer }>(
        'SELECT poster_key AS key, vector FROM embeddings WHERE model_version = $1 AND precision = $2 AND poster_key = ANY($3::bigint[]) ORDER BY poster_key',
        [space.version, space.precision, wanted.slice(start, start + PAGE)],
      );
      take(rows);
    }
  } else {
    for (let after = -1; ; after = keys[keys.length - 1]!) {
      const { rows } = await client.query<{ key: string; vector: Buffer }>(
        'SELECT poster_key AS key, vector FROM embeddings WHERE model_version = $1 AND precision = $2 AND poster_key > $3 ORDER BY poster_key LIMIT $4',
        [space.version, space.precision, after, PAGE],
      );
      take(rows);
      if (rows.length < PAGE) break;
    }
  }
  const vectors = new Float32Array(shared ? new SharedArrayBuffer(keys.length * dims * 4) : new ArrayBuffer(keys.length * dims * 4));
  parts.forEach((vector, i) => vectors.set(vector, i * dims));
  const keyArray = new BigUint64Array(shared ? new SharedArrayBuffer(keys.length * 8) : new ArrayBuffer(keys.length * 8));
  keys.forEach((key, i) => (keyArray[i] = BigInt(key)));
  return { keys: keyArray, vectors, dims };
}

function asFloat32(bytes: Buffer): Float32Array {
  return new Float32Array(Uint8Array.prototype.slice.call(bytes).buffer);
}
