import { createHash } from 'node:crypto';
import { decodeCursor, encodeCursor, sameContent, type BrowseOptions, type Catalog, type FilterFields, type NewPoster, type Poster } from '../catalog.js';
import { posterFromRow as fromRow, type PosterRow } from '../rows.js';
import { titleTerms } from '../sqlite/title-terms.js';
import { type Client, type Pool, transaction } from './db.js';

type Change = 'added' | 'updated' | 'unchanged';

/**
 * The catalog on PostgreSQL. A write to one id holds a transaction-scoped advisory lock on it, so
 * that the read deciding the write (is it new, was it deleted, is it unchanged) cannot race another
 * server's write of the same id.
 */
export class PostgresCatalog implements Catalog {
  constructor(private readonly pool: Pool) {}

  async fingerprint(): Promise<string> {
    return createHash('sha256').update(`catalog-changes:${(await this.changes()).changes}`).digest('hex');
  }

  async changes(): Promise<{ changes: number; pictures: number }> {
    const row = (await this.pool.query<{ changes: string; pictures: string }>('SELECT changes, pictures FROM catalog_state')).rows[0]!;
    return { changes: Number(row.changes), pictures: Number(row.pictures) };
  }

  async count(): Promise<number> {
    return Number((await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM posters')).rows[0]!.n);
  }

  async get(id: string): Promise<Poster | null> {
    return read(this.pool, id);
  }

  async getByIds(ids: string[]): Promise<Map<string, Poster>> {
    const out = new Map<string, Poster>();
    if (ids.length === 0) return out;
    for (const row of (await this.pool.query<PosterRow>('SELECT * FROM posters WHERE id = ANY($1::text[])', [ids])).rows) out.set(row.id, fromRow(row));
    return out;
  }

  async getMany(keys: number[]): Promise<Map<number, Poster>> {
    const out = new Map<number, Poster>();
    if (keys.length === 0) return out;
    for (const row of (await this.pool.query<PosterRow>('SELECT * FROM posters WHERE key = ANY($1::bigint[])', [keys])).rows) out.set(Number(row.key), fromRow(row));
    return out;
  }

  async filterFieldsAfter(afterKey: number, limit: number): Promise<FilterFields[]> {
    const { rows } = await this.pool.query<{ key: string; year: number | null; genres: string[] }>(
      'SELECT key, year, genres FROM posters WHERE key > $1 ORDER BY key LIMIT $2',
      [afterKey, limit],
    );
    return rows.map((row) => ({ key: Number(row.key), year: row.year, genres: row.genres }));
  }

  async all(): Promise<Poster[]> {
    return (await this.pool.query<PosterRow>('SELECT * FROM posters ORDER BY key')).rows.map(fromRow);
  }

  async byPixelSha256(sha: string): Promise<Poster | null> {
    const row = (await this.pool.query<PosterRow>('SELECT * FROM posters WHERE pixel_sha256 = $1 ORDER BY key LIMIT 1', [sha])).rows[0];
    return row ? fromRow(row) : null;
  }

  async browse(options: BrowseOptions): Promise<{ posters: Poster[]; nextCursor: string | null }> {
    const params: unknown[] = [];
    const param = (value: unknown) => `$${params.push(value)}`;
    let sql = 'SELECT p.* FROM posters p';
    const where: string[] = [];
    if (options.genre) sql += ` JOIN poster_genres g ON g.poster_key = p.key AND g.genre = ${param(options.genre)}`;
    if (options.yearFrom !== undefined) where.push(`p.year >= ${param(options.yearFrom)}`);
    if (options.yearTo !== undefined) where.push(`p.year <= ${param(options.yearTo)}`);
    // Ids compare byte by byte, as SQLite's do.
    if (options.cursor) where.push(`p.id COLLATE "C" > ${param(decodeCursor(options.cursor))}`);
    if (where.length) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ` ORDER BY p.id COLLATE "C" LIMIT ${param(options.limit + 1)}`;
    const rows = (await this.pool.query<PosterRow>(sql, params)).rows.map(fromRow);
    const more = rows.length > options.limit;
    const posters = more ? rows.slice(0, options.limit) : rows;
    return { posters, nextCursor: more ? encodeCursor(posters[posters.length - 1]!.id) : null };
  }

  async delete(id: string, now: string): Promise<Poster | null> {
    return transaction(this.pool, async (client) => {
      await lockId(client, id);
      const poster = await read(client, id);
      if (!poster) return null;
      await client.query('DELETE FROM posters WHERE key = $1', [poster.key]);
      await client.query('INSERT INTO deleted_posters (id, deleted_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET deleted_at = excluded.deleted_at', [id, now]);
      return poster;
    });
  }

  async importPoster(poster: NewPoster, now: string): Promise<Change | 'deleted'> {
    return transaction(this.pool, async (client) => {
      await lockId(client, poster.id);
      if ((await client.query('SELECT 1 FROM deleted_posters WHERE id = $1', [poster.id])).rowCount) return 'deleted';
      return (await write(client, poster, now)).change;
    });
  }

  async isDeleted(id: string): Promise<boolean> {
    return Boolean((await this.pool.query('SELECT 1 FROM deleted_posters WHERE id = $1', [id])).rowCount);
  }

  async upsert(poster: NewPoster, now: string): Promise<{ key: number; change: Change }> {
    return transaction(this.pool, async (client) => {
      await lockId(client, poster.id);
      return write(client, poster, now);
    });
  }
}

export async function read(client: Pool | Client, id: string): Promise<Poster | null> {
  const row = (await client.query<PosterRow>('SELECT * FROM posters WHERE id = $1', [id])).rows[0];
  return row ? fromRow(row) : null;
}

export function lockId(client: Client, id: string): Promise<unknown> {
  return client.query("SELECT pg_advisory_xact_lock(hashtext('poster:' || $1))", [id]);
}

/** Inserts or updates by id in the caller's transaction (the id locked); the key of an existing poster never changes. */
export async function write(client: Client, poster: NewPoster, now: string): Promise<{ key: number; change: Change }> {
  const existing = await read(client, poster.id);
  if (existing && sameContent(existing, poster)) return { key: existing.key, change: 'unchanged' };
  const values = [
    poster.id, poster.title, poster.year, poster.releaseDate, JSON.stringify(poster.genres), poster.singleGenre, poster.split, poster.imagePath,
    poster.imageSha256, poster.pixelSha256, poster.width, poster.height, poster.source ? JSON.stringify(poster.source) : null, now,
    poster.title === null ? null : titleTerms(poster.title),
  ]; // prettier-ignore
  let key: number;
  if (existing) {
    key = existing.key;
    await client.query(
      `UPDATE posters SET title = $2, year = $3, release_date = $4, genres = $5, single_genre = $6, split = $7, image_path = $8,
         image_sha256 = $9, pixel_sha256 = $10, width = $11, height = $12, source = $13, imported_at = $14, title_terms = $15 WHERE id = $1`,
      values,
    );
    // A new picture under the same id: its old embeddings describe another image.
    if (existing.pixelSha256 !== poster.pixelSha256) await client.query('DELETE FROM embeddings WHERE poster_key = $1', [key]);
    await client.query('DELETE FROM poster_genres WHERE poster_key = $1', [key]);
  } else {
    const { rows } = await client.query<{ key: string }>(
      `INSERT INTO posters (id, title, year, release_date, genres, single_genre, split, image_path, image_sha256, pixel_sha256, width, height, source, imported_at, title_terms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING key`,
      values,
    );
    key = Number(rows[0]!.key);
  }
  if (poster.genres.length > 0) {
    await client.query('INSERT INTO poster_genres (poster_key, genre) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING', [key, poster.genres]);
  }
  return { key, change: existing ? 'updated' : 'added' };
}
