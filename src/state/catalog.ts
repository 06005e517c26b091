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

/** A poster's key, year and genres: what a searcher keeps in memory to filter by. */
export interface FilterFields {
  key: number;
  year: number | null;
  genres: string[];
}

export interface BrowseOptions {
  genre?: string;
  yearFrom?: number;
  yearTo?: number;
  limit: number;
  cursor?: string;
}

/** The poster catalog: posters by id (and by key, the number the indexes know them by). */
export interface Catalog {
  /**
   * The catalog's state as one hash, which every poster added or removed and every change of a
   * picture, genres or split moves. What is derived from the catalog (an evaluation, the embedding
   * map) records it, to tell whether it still describes it.
   */
  fingerprint(): Promise<string>;
  /** The change counters: `changes` (see fingerprint), and `pictures`, moved only by posters added, removed or re-pictured. */
  changes(): Promise<{ changes: number; pictures: number }>;
  count(): Promise<number>;
  get(id: string): Promise<Poster | null>;
  /** Some posters by id, in one query; ids with no poster are left out. */
  getByIds(ids: string[]): Promise<Map<string, Poster>>;
  /** Some posters by key, in one query; keys with no poster are left out. */
  getMany(keys: number[]): Promise<Map<number, Poster>>;
  /** What a searcher keeps of each poster, a page at a time: the first `limit` posters after `afterKey`, by key. */
  filterFieldsAfter(afterKey: number, limit: number): Promise<FilterFields[]>;
  /** Every poster, by key. */
  all(): Promise<Poster[]>;
  /** The first poster (by key) whose decoded pixels hash to `sha`. */
  byPixelSha256(sha: string): Promise<Poster | null>;
  /** Keyset pagination by id: `cursor` (from encodeCursor) names the last id of the previous page. */
  browse(options: BrowseOptions): Promise<{ posters: Poster[]; nextCursor: string | null }>;
  /** Removes a poster (its genres and embeddings of every version with it) and remembers its id as deleted. */
  delete(id: string, now: string): Promise<Poster | null>;
  /** An imported poster written, unless its id was deleted through the API (checked in the same transaction). */
  importPoster(poster: NewPoster, now: string): Promise<'added' | 'updated' | 'unchanged' | 'deleted'>;
  /** Whether the id was deleted through the API (the catalog import leaves such rows out). */
  isDeleted(id: string): Promise<boolean>;
  /** Inserts or updates by id, in one transaction; the key of an existing poster never changes. */
  upsert(poster: NewPoster, now: string): Promise<{ key: number; change: 'added' | 'updated' | 'unchanged' }>;
}

/** Whether a write of `b` would change nothing of the stored poster `a` (its source compared whatever the order of its keys). */
export function sameContent(a: Poster, b: NewPoster): boolean {
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
    canonical(a.source) === canonical(b.source ?? null)
  );
}

/** JSON with every object's keys in order: equal for equal values however they were stored (PostgreSQL's jsonb reorders keys). */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) : v,
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
