/** The characters FTS5's unicode61 tokenizer keeps in a term (letters, digits, private use); the rest separate terms. */
export const TITLE_TERM = /[\p{L}\p{N}\p{Co}]+/gu;

/**
 * The most titles each term of a query may be in for bm25 to rank the matches; past them, a query
 * is listed by the title's word count, then key (both backends; see SqlitePosterTitles for why).
 */
export const RANKED_WINDOW = 2_000;

export interface TitleFilter {
  genre?: string;
  yearFrom?: number;
  yearTo?: number;
}

/** Where a page ended: inside the ranked window (its last score and key), or past it (the last position in the index's own order). */
export type TitlePosition = { ranked: true; score: number; key: number } | { ranked: false; rowid: number };

export interface TitlePage {
  /** Poster keys, best first. */
  keys: number[];
  /** Where the next page starts; null on the last page. */
  next: TitlePosition | null;
}

/** The full-text index of poster titles (GET /posters?q=), searched a page at a time. */
export interface PosterTitles {
  /**
   * One page of the posters whose title matches every phrase (titlePhrases makes them) and that
   * pass the filter, starting after `after` (null: the first page).
   */
  search(phrases: string[], filter: TitleFilter, limit: number, after: TitlePosition | null): Promise<TitlePage>;
}
