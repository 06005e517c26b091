import type { PerceptualHash } from '../search/perceptual-hash.js';

/** A poster whose picture has no current perceptual hash: what the start-up hashes. */
export interface UnhashedPoster {
  key: number;
  imagePath: string;
  pixelSha256: string;
}

/** Posters' perceptual hashes, each of the picture whose decoded pixels hash to its `pixelSha256`. */
export interface PosterHashStore {
  put(key: number, pixelSha256: string, hash: PerceptualHash): Promise<void>;
  /**
   * The same, unless the poster has meanwhile been removed or given another picture (whose hash
   * its writer stores): for hashes made while the catalog changes.
   */
  putIfCurrent(key: number, pixelSha256: string, hash: PerceptualHash): Promise<void>;
  /** Some posters' hashes of their current pictures; those without one are left out. */
  getMany(keys: number[]): Promise<Map<number, PerceptualHash>>;
  /** Every poster's hash of its current picture. */
  current(): AsyncIterable<{ key: number; hash: PerceptualHash }>;
  /** Posters with no hash, or the hash of a picture they no longer have; the thread free while it reads (SQLite: a page at a time). */
  missing(pageSize?: number): Promise<UnhashedPoster[]>;
}
