import { ApiError } from '../errors.js';
import { titlePhrases } from '../search/title-query.js';
import { CursorError, type Catalog, type Poster } from '../state/catalog.js';
import type { PosterTitles, TitlePosition } from '../state/titles.js';

/**
 * GET /posters: the catalog a page at a time, by id (browse) or, with `q`, by how well the title
 * matches (title search, src/state/sqlite/titles.ts); both take the genre and year filters and a cursor.
 */

export interface ListingQuery {
  /** A title search; absent: browse by id. */
  q?: string;
  genre?: string;
  yearFrom?: number;
  yearTo?: number;
  limit: number;
  cursor?: string;
}

export interface Listing {
  posters: Poster[];
  nextCursor: string | null;
}

export async function listPosters(catalog: Catalog, titles: PosterTitles, query: ListingQuery): Promise<Listing> {
  const { q, genre, yearFrom, yearTo, limit, cursor } = query;
  if (yearFrom !== undefined && yearTo !== undefined && yearFrom > yearTo) {
    throw new ApiError(400, 'invalid_request', `year_from (${yearFrom}) is after year_to (${yearTo})`);
  }
  if (q === undefined) return catalog.browse({ genre, yearFrom, yearTo, limit, cursor });
  const phrases = titlePhrases(q);
  if (phrases === null) throw new ApiError(400, 'empty_query', 'q has no word to search for: send letters or digits');
  const page = await titles.search(phrases, { genre, yearFrom, yearTo }, limit, cursor === undefined ? null : decodeSearchCursor(cursor));
  const found = await catalog.getMany(page.keys);
  return {
    // A poster deleted between the two reads is left out.
    posters: page.keys.flatMap((key) => found.get(key) ?? []),
    nextCursor: page.next ? encodeSearchCursor(page.next) : null,
  };
}

const SEARCH_CURSOR_PREFIX = 't1.';

/** A title search's page cursor: opaque, versioned, told apart from a browse cursor. */
function encodeSearchCursor(position: TitlePosition): string {
  const value = position.ranked ? { score: position.score, key: position.key } : { rowid: position.rowid };
  return SEARCH_CURSOR_PREFIX + Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function decodeSearchCursor(cursor: string): TitlePosition {
  if (!cursor.startsWith(SEARCH_CURSOR_PREFIX)) {
    throw new CursorError('the cursor is not one of this title search: pass next_cursor back as it is, with the same q');
  }
  try {
    const value = JSON.parse(Buffer.from(cursor.slice(SEARCH_CURSOR_PREFIX.length), 'base64url').toString('utf8')) as Record<string, unknown>;
    if (Number.isFinite(value.score) && Number.isSafeInteger(value.key)) return { ranked: true, score: value.score as number, key: value.key as number };
    if (Number.isSafeInteger(value.rowid)) return { ranked: false, rowid: value.rowid as number };
  } catch {
    /* reported below */
  }
  throw new CursorError('the cursor is damaged: pass next_cursor back as it is');
}
