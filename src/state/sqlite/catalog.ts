import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { BrowseOptions, Catalog, FilterFields, NewPoster, Poster } from '../catalog.js';
import { decodeCursor, encodeCursor, sameContent } from '../catalog.js';
import { POSTER_COLUMNS, posterFromRow as fromRow, posterFromValues, type PosterRow } from '../rows.js';
import { type Db, inWriteTransaction } from './db.js';

/** The poster catalog in SQLite. The *Sync methods are for State's transactions that span stores. */
export class SqliteCatalog implements Catalog {
  // Prepared once, rows as arrays (see posterFromValues): the search path reads posters on every request.
  private readonly byId: Database.Statement<[string], unknown[]>;
  private readonly byIds: Database.Statement<[string], unknown[]>;
  private readonly byKeys: Database.Statement<[string], unknown[]>;
  private readonly byPixels: Database.Statement<[string], unknown[]>;

  constructor(private readonly db: Db) {
    const select = (where: string) => db.prepare<[string], unknown[]>(`SELECT ${POSTER_COLUMNS.join(', ')} FROM posters WHERE ${where}`).raw(true);
    this.byId = select('id = ?');
    this.byIds = select('id IN (SELECT value FROM json_each(?))');
    this.byKeys = select('key IN (SELECT value FROM json_each(?))');
    this.byPixels = select('pixel_sha256 = ? ORDER BY key LIMIT 1');
  }

  /**
   * The catalog's state as one hash: of its change counter (migrations/012), which every poster
   * added or removed and every change of a picture, genres or split moves. What is derived from the
   * catalog (an evaluation, the embedding map) records it, to tell whether it still describes it.
   * (It was a hash of every poster's row: seconds at a million posters, on every request that asked.)
   */
  async fingerprint(): Promise<string> {
    return createHash('sha256').update(`catalog-changes:${this.counters().changes}`).digest('hex');
  }

  /** The change counters: `changes` (see fingerprint), and `pictures`, moved only by posters added, removed or re-pictured. */
  async changes(): Promise<{ changes: number; pictures: number }> {
    return this.counters();
  }

  private counters(): { changes: number; pictures: number } {
    return this.db.prepare('SELECT changes, pictures FROM catalog_state').get() as { changes: number; pictures: number };
  }

  async count(): Promise<number> {
    return (this.db.prepare('SELECT count(*) AS n FROM posters').get() as { n: number }).n;
  }

  async get(id: string): Promise<Poster | null> {
    return this.getSync(id);
  }

  getSync(id: string): Poster | null {
    const row = this.byId.get(id);
    return row ? posterFromValues(row) : null;
  }

  async getByIds(ids: string[]): Promise<Map<string, Poster>> {
    const out = new Map<string, Poster>();
    if (ids.length === 0) return out;
    for (const row of this.byIds.all(JSON.stringify(ids))) {
      const poster = posterFromValues(row);
      out.set(poster.id, poster);
    }
    return out;
  }

  /** Some posters by key, in one query; keys with no poster are left out. */
  async getMany(keys: number[]): Promise<Map<number, Poster>> {
    return this.getManySync(keys);
  }

  /** getMany, for tests and benchmarks that search synchronously. */
  getManySync(keys: number[]): Map<number, Poster> {
    const out = new Map<number, Poster>();
    if (keys.length === 0) return out;
    for (const row of this.byKeys.all(JSON.stringify(keys))) {
      const poster = posterFromValues(row);
      out.set(poster.key, poster);
    }
    return out;
  }

  /** Every poster's key, year and genres, one row at a time: what a searcher keeps in memory (tests and benchmarks). */
  *filterFields(): Generator<FilterFields> {
    const rows = this.db.prepare('SELECT key, year, genres FROM posters ORDER BY key').iterate() as IterableIterator<{ key: number; year: number | null; genres: string }>;
    for (const row of rows) yield { key: row.key, year: row.year, genres: JSON.parse(row.genres) as string[] };
  }

  async filterFieldsAfter(afterKey: number, limit: number): Promise<FilterFields[]> {
    const rows = this.db.prepare('SELECT key, year, genres FROM posters WHERE key > ? ORDER BY key LIMIT ?').all(afterKey, limit) as { key: number; year: number | null; genres: string }[];
    return rows.map((row) => ({ key: row.key, year: row.year, genres: JSON.parse(row.genres) as string[] }));
  }

  async all(): Promise<Poster[]> {
    return this.allSync();
  }

  /** all, for tests and benchmarks. */
  allSync(): Poster[] {
    return (this.db.prepare('SELECT * FROM posters ORDER BY key').all() as PosterRow[]).map(fromRow);
  }

  async byPixelSha256(sha: string): Promise<Poster | null> {
    const row = this.byPixels.get(sha);
    return row ? posterFromValues(row) : null;
  }

  async browse(options: BrowseOptions): Promise<{ posters: Poster[]; nextCursor: string | null }> {
    const params: unknown[] = [];
    let sql = 'SELECT p.* FROM posters p';
    const where: string[] = [];
    if (options.genre) {
      sql += ' JOIN poster_genres g ON g.poster_key = p.key AND g.genre = ?';
      params.push(options.genre);
    }
    if (options.yearFrom !== undefined) {
      where.push('p.year >= ?');
      params.push(options.yearFrom);
    }
    if (options.yearTo !== undefined) {
      where.push('p.year <= ?');
      params.push(options.yearTo);
    }
    if (options.cursor) {
      where.push('p.id > ?');
      params.push(decodeCursor(options.cursor));
    }
    if (where.length) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ' ORDER BY p.id LIMIT ?';
    params.push(options.limit + 1);
    const rows = (this.db.prepare(sql).all(...params) as PosterRow[]).map(fromRow);
    const more = rows.length > options.limit;
    const posters = more ? rows.slice(0, options.limit) : rows;
    return { posters, nextCursor: more ? encodeCursor(posters[posters.length - 1]!.id) : null };
  }

  async delete(id: string, now: string): Promise<Poster | null> {
    return this.deleteSync(id, now);
  }

  /** delete, for tests and benchmarks. */
  deleteSync(id: string, now: string): Poster | null {
    return inWriteTransaction(this.db, () => {
      const poster = this.getSync(id);
      if (!poster) return null;
      this.db.prepare('DELETE FROM posters WHERE key = ?').run(poster.key);
      this.db.prepare('INSERT OR REPLACE INTO deleted_posters (id, deleted_at) VALUES (?, ?)').run(id, now);
      return poster;
    });
  }

  async importPoster(poster: NewPoster, now: string): Promise<'added' | 'updated' | 'unchanged' | 'deleted'> {
    return inWriteTransaction(this.db, () => (this.isDeletedSync(poster.id) ? 'deleted' : this.upsertSync(poster, now).change));
  }

  async isDeleted(id: string): Promise<boolean> {
    return this.isDeletedSync(id);
  }

  private isDeletedSync(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM deleted_posters WHERE id = ?').get(id) !== undefined;
  }

  /** An id added again through the API is no longer deleted (in State.savePoster's transaction). */
  undeleteSync(id: string): void {
    this.db.prepare('DELETE FROM deleted_posters WHERE id = ?').run(id);
  }

  async upsert(poster: NewPoster, now: string): Promise<{ key: number; change: 'added' | 'updated' | 'unchanged' }> {
    return this.upsertSync(poster, now);
  }

  /** upsert, inside a transaction of the caller's (State.savePoster), or for tests and benchmarks. */
  upsertSync(poster: NewPoster, now: string): { key: number; change: 'added' | 'updated' | 'unchanged' } {
    return inWriteTransaction(this.db, () => this.write(poster, now));
  }

  private write(poster: NewPoster, now: string): { key: number; change: 'added' | 'updated' | 'unchanged' } {
    const existing = this.getSync(poster.id);
    if (existing && sameContent(existing, poster)) return { key: existing.key, change: 'unchanged' };
    const values = {
      id: poster.id,
      title: poster.title,
      year: poster.year,
      release_date: poster.releaseDate,
      genres: JSON.stringify(poster.genres),
      single_genre: poster.singleGenre,
      split: poster.split,
      image_path: poster.imagePath,
      image_sha256: poster.imageSha256,
      pixel_sha256: poster.pixelSha256,
      width: poster.width,
      height: poster.height,
      source: poster.source ? JSON.stringify(poster.source) : null,
      imported_at: now,
    };
    let key: number;
    if (existing) {
      key = existing.key;
      this.db
        .prepare(
          `UPDATE posters SET title=@title, year=@year, release_date=@release_date, genres=@genres, single_genre=@single_genre,
             split=@split, image_path=@image_path, image_sha256=@image_sha256, pixel_sha256=@pixel_sha256,
             width=@width, height=@height, source=@source, imported_at=@imported_at WHERE id=@id`,
        )
        .run(values);
      if (existing.pixelSha256 !== poster.pixelSha256) {
        // A new picture under the same id: its old embeddings describe another image.
        this.db.prepare('DELETE FROM embeddings WHERE poster_key = ?').run(key);
      }
      this.db.prepare('DELETE FROM poster_genres WHERE poster_key = ?').run(key);
    } else {
      key = Number(
        this.db
          .prepare(
            `INSERT INTO posters (id, title, year, release_date, genres, single_genre, split, image_path, image_sha256,
               pixel_sha256, width, height, source, imported_at)
             VALUES (@id, @title, @year, @release_date, @genres, @single_genre, @split, @image_path, @image_sha256,
               @pixel_sha256, @width, @height, @source, @imported_at)`,
          )
          .run(values).lastInsertRowid,
      );
    }
    const addGenre = this.db.prepare('INSERT OR IGNORE INTO poster_genres (poster_key, genre) VALUES (?, ?)');
    for (const genre of poster.genres) addGenre.run(key, genre);
    return { key, change: existing ? 'updated' : 'added' };
  }
}
