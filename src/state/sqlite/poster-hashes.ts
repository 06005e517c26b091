import type Database from 'better-sqlite3';
import type { PerceptualHash } from '../../search/perceptual-hash.js';
import type { PosterHashStore, UnhashedPoster } from '../poster-hashes.js';
import type { Db } from './db.js';

/** Posters' perceptual hashes in SQLite (migrations/011_poster_hashes.sql). */
export class SqlitePosterHashStore implements PosterHashStore {
  private readonly upsert: Database.Statement<[number, string, string, string, string, string]>;
  private readonly upsertIfCurrent: Database.Statement<[number, string, string, string, string, string, number, string]>;

  constructor(private readonly db: Db) {
    this.upsert = db.prepare(
      `INSERT INTO poster_hashes (poster_key, pixel_sha256, whole, trimmed, crop_95, crop_85) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (poster_key) DO UPDATE SET pixel_sha256 = excluded.pixel_sha256, whole = excluded.whole, trimmed = excluded.trimmed,
         crop_95 = excluded.crop_95, crop_85 = excluded.crop_85`,
    );
    this.upsertIfCurrent = db.prepare(
      `INSERT INTO poster_hashes (poster_key, pixel_sha256, whole, trimmed, crop_95, crop_85)
       SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM posters WHERE key = ? AND pixel_sha256 = ?)
       ON CONFLICT (poster_key) DO UPDATE SET pixel_sha256 = excluded.pixel_sha256, whole = excluded.whole, trimmed = excluded.trimmed,
         crop_95 = excluded.crop_95, crop_85 = excluded.crop_85`,
    );
  }

  /** The hash of a poster's picture (the one whose decoded pixels hash to `pixelSha256`). */
  async put(key: number, pixelSha256: string, hash: PerceptualHash): Promise<void> {
    this.write(key, pixelSha256, hash);
  }

  /** put, inside a transaction of the caller's (State.savePoster). */
  write(key: number, pixelSha256: string, hash: PerceptualHash): void {
    this.upsert.run(key, pixelSha256, hash.whole, hash.trimmed, hash.crop95, hash.crop85);
  }

  /**
   * The same, unless the poster has meanwhile been removed or given another picture (whose hash
   * its writer stores): for hashes made while the catalog changes.
   */
  async putIfCurrent(key: number, pixelSha256: string, hash: PerceptualHash): Promise<void> {
    this.upsertIfCurrent.run(key, pixelSha256, hash.whole, hash.trimmed, hash.crop95, hash.crop85, key, pixelSha256);
  }

  async getMany(keys: number[]): Promise<Map<number, PerceptualHash>> {
    const rows = this.db
      .prepare(
        `SELECT h.poster_key AS key, h.whole, h.trimmed, h.crop_95 AS crop95, h.crop_85 AS crop85
         FROM poster_hashes h JOIN posters p ON p.key = h.poster_key AND p.pixel_sha256 = h.pixel_sha256
         WHERE h.poster_key IN (SELECT value FROM json_each(?))`,
      )
      .all(JSON.stringify(keys)) as ({ key: number } & PerceptualHash)[];
    return new Map(rows.map(({ key, ...hash }) => [key, hash]));
  }

  /** Every poster's hash of its current picture. */
  async *current(): AsyncGenerator<{ key: number; hash: PerceptualHash }> {
    const rows = this.db
      .prepare(
        `SELECT h.poster_key AS key, h.whole, h.trimmed, h.crop_95 AS crop95, h.crop_85 AS crop85
         FROM poster_hashes h JOIN posters p ON p.key = h.poster_key AND p.pixel_sha256 = h.pixel_sha256`,
      )
      .iterate() as IterableIterator<{ key: number } & PerceptualHash>;
    for (const { key, ...hash } of rows) yield { key, hash };
  }

  /**
   * Posters with no hash, or the hash of a picture they no longer have; the catalog read a page of
   * posters at a time with the thread free between pages (a server's start: a million posters read
   * whole would hold it for seconds).
   */
  async missing(pageSize = 10_000): Promise<UnhashedPoster[]> {
    const pageEnd = this.db.prepare(`SELECT key FROM posters WHERE key > ? ORDER BY key LIMIT 1 OFFSET ${pageSize - 1}`).pluck();
    const page = this.db.prepare(
      `SELECT p.key AS key, p.image_path AS imagePath, p.pixel_sha256 AS pixelSha256 FROM posters p
       LEFT JOIN poster_hashes h ON h.poster_key = p.key AND h.pixel_sha256 = p.pixel_sha256
       WHERE p.key > ? AND p.key <= ? AND h.poster_key IS NULL ORDER BY p.key`,
    );
    const out: UnhashedPoster[] = [];
    for (let after = -1; ; await new Promise((resolve) => setImmediate(resolve))) {
      const end = (pageEnd.get(after) as number | undefined) ?? Number.MAX_SAFE_INTEGER;
      out.push(...(page.all(after, end) as UnhashedPoster[]));
      if (end === Number.MAX_SAFE_INTEGER) return out;
      after = end;
    }
  }
}
