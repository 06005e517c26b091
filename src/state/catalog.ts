import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { type Db, inWriteTransaction } from './sqlite/db.js';

export type Split = 'train' | 'val' | 'test';

export interface Poster {
  key: number;
  id: string;
  title: string | null;
  year: number | null;
  releaseDate: string | null;
  genres: string[];
  singleGenre: string;
  split: Split | null;
  imagePath: string;
  imageSha256: string;
  pixelSha256: string;
  width: number;
  height: number;
  /** Where it came from (an importer's own fields, e.g. TMDB's id); null when nothing was said. */
  source: Record<string, unknown> | null;
}

export type NewPoster = Omit<Poster, 'key' | 'source'> & { source?: Record<string, unknown> | null };

interface PosterRow {
  key: number;
  id: string;
  title: string | null;
  year: number | null;
  release_date: string | null;
  genres: string;
  single_genre: string;
  split: Split | null;
  image_path: string;
  image_sha256: string;
  pixel_sha256: string;
  width: number;
  height: number;
  source: string | null;
}

function fromRow(row: PosterRow): Poster {
  return {
    key: row.key,
    id: row.id,
    title: row.title,
    year: row.year,
    releaseDate: row.release_date,
    genres: JSON.parse(row.genres) as string[],
    singleGenre: row.single_genre,
    split: row.split,
    imagePath: row.image_path,
    imageSha256: row.image_sha256,
    pixelSha256: row.pixel_sha256,
    width: row.width,
    height: row.height,
    source: row.source ? (JSON.parse(row.source) as Record<string, unknown>) : null,
  };
}

/** The poster catalog in SQLite. */
export class Catalog {
  // Prepared once: the search path reads posters on every request.
  private readonly byId: Database.Statement<[string], PosterRow>;
  private readonly byKeys: Database.Statement<[string], PosterRow>;
  private readonly byPixels: Database.Statement<[string], PosterRow>;

  constructor(private readonly db: Db) {
    this.byId = db.prepare('SELECT * FROM posters WHERE id = ?');
    this.byKeys = db.prepare('SELECT * FROM posters WHERE key IN (SELECT value FROM json_each(?))');
    this.byPixels = db.prepare('SELECT * FROM posters WHERE pixel_sha256 = ? ORDER BY key LIMIT 1');
  }

  /**
   * The catalog's state as one hash: of its change counter (migrations/012), which every poster
   * added or removed and every change of a picture, genres or split moves. What is derived from the
   * catalog (an evaluation, the embedding map) records it, to tell whether it still describes it.
   * (It was a hash of every poster's row: seconds at a million posters, on every request that asked.)
   */
  fingerprint(): string {
    return createHash('sha256').update(`catalog-changes:${this.changes().changes}`).digest('hex');
  }

  /** The change counters: `changes` (see fingerprint), and `pictures`, moved only by posters added, removed or re-pictured. */
  changes(): { changes: number; pictures: number } {
    return this.db.prepare('SELECT changes, pictures FROM catalog_state').get() as { changes: number; pictures: number };
  }

  count(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM posters').get() as { n: number }).n;
  }

  get(id: string): Poster | null {
    const row = this.byId.get(id);
    return row ? fromRow(row) : null;
  }

  /** Some posters by key, in one query; keys with no poster are left out. */
  getMany(keys: number[]): Map<number, Poster> {
    const out = new Map<number, Poster>();
    if (keys.length === 0) return out;
    for (const row of this.byKeys.all(JSON.stringify(keys))) out.set(row.key, fromRow(row));
    return out;
  }

  /** Every poster's key, year and genres, one row at a time: what a searcher keeps in memory. */
  *filterFields(): Generator<{ key: number; year: number | null; genres: string[] }> {
    const rows = this.db.prepare('SELECT key, year, genres FROM posters ORDER BY key').iterate() as IterableIterator<{ key: number; year: number | null; genres: string }>;
    for (const row of rows) yield { key: row.key, year: row.year, genres: JSON.parse(row.genres) as string[] };
  }

  /** filterFields a page at a time: the first `limit` posters after `afterKey`, by key. */
  filterFieldsAfter(afterKey: number, limit: number): { key: number; year: number | null; genres: string[] }[] {
    const rows = this.db.prepare('SELECT key, year, genres FROM posters WHERE key > ? ORDER BY key LIMIT ?').all(afterKey, limit) as { key: number; year: number | null; genres: string }[];
    return rows.map((row) => ({ key: row.key, year: row.year, genres: JSON.parse(row.genres) as string[] }));
  }

  all(): Poster[] {
    return (this.db.prepare('SELECT * FROM posters ORDER BY key').all() as PosterRow[]).map(fromRow);
  }

  byPixelSha256(sha: string): Poster | null {
    const row = this.byPixels.get(sha);
    return row ? fromRow(row) : null;
  }

  /** Keyset pagination by id: `cursor` (from encodeCursor) names the last id of the previous page. */
  browse(options: { genre?: string; yearFrom?: number; yearTo?: number; limit: number; cursor?: string }): { posters: Poster[]; nextCursor: string | null } {
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

  /** Removes a poster (its genres and embeddings of every version with it) and remembers its id as deleted. */
  delete(id: string, now: string): Poster | null {
    return inWriteTransaction(this.db, () => {
      const poster = this.get(id);
      if (!poster) return null;
      this.db.prepare('DELETE FROM posters WHERE key = ?').run(poster.key);
      this.db.prepare('INSERT OR REPLACE INTO deleted_posters (id, deleted_at) VALUES (?, ?)').run(id, now);
      return poster;
    });
  }

  /** An imported poster written, unless its id was deleted through the API (checked in the same transaction). */
  importPoster(poster: NewPoster, now: string): 'added' | 'updated' | 'unchanged' | 'deleted' {
    return inWriteTransaction(this.db, () => (this.isDeleted(poster.id) ? 'deleted' : this.upsert(poster, now).change));
  }

  /** Whether the id was deleted through the API (the catalog import leaves such rows out). */
  isDeleted(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM deleted_posters WHERE id = ?').get(id) !== undefined;
  }

  /** An id added again through the API is no longer deleted. */
  undelete(id: string): void {
    this.db.prepare('DELETE FROM deleted_posters WHERE id = ?').run(id);
  }

  /** Inserts or updates by id, in one transaction; the key of an existing poster never changes. Returns the key. */
  upsert(poster: NewPoster, now: string): { key: number; change: 'added' | 'updated' | 'unchanged' } {
    return inWriteTransaction(this.db, () => this.write(poster, now));
  }

  private write(poster: NewPoster, now: string): { key: number; change: 'added' | 'updated' | 'unchanged' } {
    const existing = this.get(poster.id);
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

function sameContent(a: Poster, b: NewPoster): boolean {
  return (
    a.title === b.title &&
    a.year === b.year &&
    a.releaseDate === b.releaseDate &&
    JSON.stringify(a.genres) === JSON.stringify(b.genres) &&
    a.singleGenre === b.singleGenre &&
    a.split === b.split &&
    a.imagePath === b.imagePath &&
    a.imageSha256 === b.imageSha256 &&
    a.pixelSha256 === b.pixelSha256 &&
    JSON.stringify(a.source) === JSON.stringify(b.source ?? null)
  );
}

/** Thrown for a browse cursor this server did not make. */
export class CursorError extends Error {}

const CURSOR_PREFIX = 'c1.';

/** An opaque page cursor: versioned, base64url, so a made-up or damaged one is told apart from a real one. */
export function encodeCursor(lastId: string): string {
  return CURSOR_PREFIX + Buffer.from(JSON.stringify({ after: lastId }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): string {
  if (!cursor.startsWith(CURSOR_PREFIX)) throw new CursorError('the cursor is not one this server made: pass next_cursor back as it is');
  try {
    const value = JSON.parse(Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof value.after === 'string' && value.after) return value.after;
  } catch {
    /* reported below */
  }
  throw new CursorError('the cursor is damaged: pass next_cursor back as it is');
}
