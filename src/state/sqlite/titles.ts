import type Database from 'better-sqlite3';
import { RANKED_WINDOW, type PosterTitles, type TitleFilter, type TitlePage, type TitlePosition } from '../titles.js';
import type { Db } from './db.js';

/**
 * The full-text index of poster titles (migrations/010_title_search.sql), searched a page at a time.
 *
 * Ranking: bm25 (FTS5's, lower is better), ties by poster key, when each word of the query is in at
 * most `window` titles. bm25 needs each word's count of titles, and FTS5 counts them by reading the
 * word's whole list: for a common word at a million titles ("the": a quarter of a million) that
 * alone takes tens of milliseconds, whatever else the query asks ("the man" matches a few
 * thousand). A query with such a word is listed in the index's rowid order instead, by the title's
 * word count, then key, read only as far as the page needs: bm25's order whenever each word occurs
 * once in each title (bm25 then falls as the title grows longer), the shortest titles first. (Were
 * the matches to grow past the window under a ranked cursor, its first `window` stay ranked and
 * the rest follow in rowid order.) The filters apply to the list: a filtered search lists the
 * posters of the unfiltered one that pass, in its order.
 */

/** FTS rowid = (word count << 40) | poster key. */
const KEY_MASK = 2 ** 40 - 1;

type Params = Record<string, string | number>;

/** PosterTitles on SQLite's FTS5. */
export class SqlitePosterTitles implements PosterTitles {
  /** Prepared once per filter shape (which filters are set). */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    private readonly db: Db,
    private readonly window = RANKED_WINDOW,
  ) {}

  /**
   * One page of the posters whose title matches every FTS5 phrase (titlePhrases makes them) and that
   * pass the filter, starting after `after` (null: the first page).
   */
  async search(phrases: string[], filter: TitleFilter, limit: number, after: TitlePosition | null): Promise<TitlePage> {
    const base = { ...filterSql(filter, '').params, match: phrases.join(' ') };
    if (after && !after.ranked) return this.rest(filter, base, after.rowid, limit);
    if (!after && phrases.some((phrase) => this.common(phrase))) return this.rest(filter, base, -1, limit);
    const { joins, where } = filterSql(filter, 'win.key');
    const rows = this.prepare(
      `ranked:${joins}:${where}`,
      `WITH win AS MATERIALIZED (
         SELECT t.rowid AS rid, t.rowid & ${KEY_MASK} AS key, bm25(poster_titles) AS score
         FROM poster_titles t WHERE poster_titles MATCH @match ORDER BY t.rowid LIMIT @window)
       SELECT w.size, w.last, page.key, page.score
       FROM (SELECT count(*) AS size, max(rid) AS last FROM win) w
       LEFT JOIN (SELECT win.key, win.score FROM win ${joins}
                  WHERE (@score IS NULL OR win.score > @score OR (win.score = @score AND win.key > @key)) ${where}
                  ORDER BY win.score, win.key LIMIT @take) page ON 1
       ORDER BY page.score, page.key`,
    ).all({ ...base, window: this.window, score: after?.score ?? null, key: after?.key ?? null, take: limit + 1 }) as {
      size: number;
      last: number | null;
      key: number | null;
      score: number | null;
    }[];
    const ranked = rows.filter((row) => row.key !== null) as { key: number; score: number }[];
    if (ranked.length > limit) {
      const last = ranked[limit - 1]!;
      return { keys: ranked.slice(0, limit).map((row) => row.key), next: { ranked: true, score: last.score, key: last.key } };
    }
    const keys = ranked.map((row) => row.key);
    const { size, last } = rows[0]!;
    if (size < this.window || last === null) return { keys, next: null };
    // The window is full: more matches may follow it, in rowid order.
    const rest = this.rest(filter, base, last, limit - keys.length);
    return { keys: [...keys, ...rest.keys], next: rest.next };
  }

  /** Whether a phrase is in more titles than the window: its list read only as far as the one past it. */
  private common(phrase: string): boolean {
    const statement = this.prepare('common', 'SELECT count(*) AS n FROM (SELECT rowid FROM poster_titles WHERE poster_titles MATCH @phrase LIMIT @over)');
    return (statement.get({ phrase, over: this.window + 1 }) as { n: number }).n > this.window;
  }

  /** Up to `limit` matches after an FTS rowid, in rowid order (by word count, then key); `next` when more follow. */
  private rest(filter: TitleFilter, params: Params, after: number, limit: number): TitlePage {
    const { joins, where } = filterSql(filter, `t.rowid & ${KEY_MASK}`);
    const rows = this.prepare(
      `rest:${joins}:${where}`,
      `SELECT t.rowid AS rid, t.rowid & ${KEY_MASK} AS key FROM poster_titles t ${joins}
       WHERE poster_titles MATCH @match AND t.rowid > @after ${where} ORDER BY t.rowid LIMIT @take`,
    ).all({ ...params, after, take: limit + 1 }) as { rid: number; key: number }[];
    const page = rows.slice(0, limit);
    const end = page.length > 0 ? page[page.length - 1]!.rid : after;
    return { keys: page.map((row) => row.key), next: rows.length > limit ? { ranked: false, rowid: end } : null };
  }

  private prepare(shape: string, sql: string): Database.Statement {
    let statement = this.statements.get(shape);
    if (!statement) this.statements.set(shape, (statement = this.db.prepare(sql)));
    return statement;
  }
}

/** The joins and conditions of a filter on the poster whose key is `key` (an SQL expression), and their parameters. */
function filterSql(filter: TitleFilter, key: string): { joins: string; where: string; params: Params } {
  const joins: string[] = [];
  const where: string[] = [];
  const params: Params = {};
  if (filter.genre !== undefined) {
    joins.push(`JOIN poster_genres g ON g.poster_key = ${key} AND g.genre = @genre`);
    params.genre = filter.genre;
  }
  if (filter.yearFrom !== undefined || filter.yearTo !== undefined) {
    joins.push(`JOIN posters p ON p.key = ${key}`);
    if (filter.yearFrom !== undefined) {
      where.push('AND p.year >= @yearFrom');
      params.yearFrom = filter.yearFrom;
    }
    if (filter.yearTo !== undefined) {
      where.push('AND p.year <= @yearTo');
      params.yearTo = filter.yearTo;
    }
  }
  return { joins: joins.join(' '), where: where.join(' '), params };
}
