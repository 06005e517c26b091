import type { PerceptualHash } from '../../search/perceptual-hash.js';
import type { PosterHashStore, UnhashedPoster } from '../poster-hashes.js';
import type { Client, Pool } from './db.js';

const UPSERT = `ON CONFLICT (poster_key) DO UPDATE SET pixel_sha256 = excluded.pixel_sha256, whole = excluded.whole,
  trimmed = excluded.trimmed, crop_95 = excluded.crop_95, crop_85 = excluded.crop_85`;

/** Posters' perceptual hashes on PostgreSQL. */
export class PostgresPosterHashStore implements PosterHashStore {
  constructor(private readonly pool: Pool) {}

  async put(key: number, pixelSha256: string, hash: PerceptualHash): Promise<void> {
    await putHash(this.pool, key, pixelSha256, hash);
  }

  async putIfCurrent(key: number, pixelSha256: string, hash: PerceptualHash): Promise<void> {
    await this.pool.query(
      `INSERT INTO poster_hashes (poster_key, pixel_sha256, whole, trimmed, crop_95, crop_85)
       SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM posters WHERE key = $1 AND pixel_sha256 = $2) ${UPSERT}`,
      [key, pixelSha256, hash.whole, hash.trimmed, hash.crop95, hash.crop85],
    );
  }

  async getMany(keys: number[]): Promise<Map<number, PerceptualHash>> {
    const { rows } = await this.pool.query<{ key: string } & PerceptualHash>(
      `SELECT h.poster_key AS key, h.whole, h.trimmed, h.crop_95 AS crop95, h.crop_85 AS crop85
       FROM poster_hashes h JOIN posters p ON p.key = h.poster_key AND p.pixel_sha256 = h.pixel_sha256
       WHERE h.poster_key = ANY($1::bigint[])`,
      [keys],
    );
    return new Map(rows.map(({ key, ...hash }) => [Number(key), hash]));
  }

  async *current(): AsyncGenerator<{ key: number; hash: PerceptualHash }> {
    for (let after = 0; ; ) {
      const { rows } = await this.pool.query<{ key: string } & PerceptualHash>(
        `SELECT h.poster_key AS key, h.whole, h.trimmed, h.crop_95 AS crop95, h.crop_85 AS crop85
         FROM poster_hashes h JOIN posters p ON p.key = h.poster_key AND p.pixel_sha256 = h.pixel_sha256
         WHERE h.poster_key > $1 ORDER BY h.poster_key LIMIT 10000`,
        [after],
      );
      for (const { key, ...hash } of rows) yield { key: Number(key), hash };
      if (rows.length < 10_000) return;
      after = Number(rows[rows.length - 1]!.key);
    }
  }

  /** The query does not hold this thread (SQLite's does), so it is one, not a page at a time. */
  async missing(): Promise<UnhashedPoster[]> {
    const { rows } = await this.pool.query<{ key: string; imagePath: string; pixelSha256: string }>(
      `SELECT p.key, p.image_path AS "imagePath", p.pixel_sha256 AS "pixelSha256" FROM posters p
       LEFT JOIN poster_hashes h ON h.poster_key = p.key AND h.pixel_sha256 = p.pixel_sha256
       WHERE h.poster_key IS NULL ORDER BY p.key`,
    );
    return rows.map((r) => ({ key: Number(r.key), imagePath: r.imagePath, pixelSha256: r.pixelSha256 }));
  }
}

/** A poster's hash written, in the caller's transaction when given its client (PostgresState.savePoster). */
export async function putHash(client: Pool | Client, key: number, pixelSha256: string, hash: PerceptualHash): Promise<void> {
  await client.query(`INSERT INTO poster_hashes (poster_key, pixel_sha256, whole, trimmed, crop_95, crop_85) VALUES ($1, $2, $3, $4, $5, $6) ${UPSERT}`, [
    key, pixelSha256, hash.whole, hash.trimmed, hash.crop95, hash.crop85,
  ]); // prettier-ignore
}
