import { titleTerms } from '../sqlite/title-terms.js';
import { RANKED_WINDOW, type PosterTitles, type TitleFilter, type TitlePage, type TitlePosition } from '../titles.js';
import type { Pool } from './db.js';

/**
 * Title search on PostgreSQL, ranked and paged as SqlitePosterTitles ranks and pages it: every term
 * required, the last a prefix while typed; bm25 as FTS5 computes it (k1 = 1.2, b = 0.75, idf
 * floored at 1e-6) when each term is in at most `window` titles, else the matches listed by the
 * title's word count, then key. The terms are SQLite's own tokenizer's (titleTerms, written beside
 * each title by the catalog; migrations/postgres/008), so both backends find and rank alike. A
 * writer of titles other than Marquee's catalog must write their terms too, or leave them NULL:
 * a server gives NULL terms theirs as it connects (fillTitleTerms). bm25 needs each
 * term's count of titles (counted up to the window, through the GIN index), the number of titles
 * and their average length (title_stats, kept by a trigger), and each match's own terms: the
 * window's matches are read with their terms and scored here.
 */
export class PostgresPosterTitles implements PosterTitles {
  constructor(
    private readonly pool: Pool,
    private readonly window = RANKED_WINDOW,
  ) {}

  async search(phrases: string[], filter: TitleFilter, limit: number, after: TitlePosition | null): Promise<TitlePage> {
    const terms = termsOf(phrases);
    if (terms.length === 0) return { keys: [], next: null };
    const match = tsquery(terms);
    const counts = await this.counts(terms);
    if (after && !after.ranked) return this.rest(match, filter, after.rowid, limit, counts);
    if (!after && counts.some((n) => n > this.window)) return this.rest(match, filter, -1, limit, counts);
    const { joins, where, params } = filterSql(filter, 'win.key', 'win.year', 3);
    const { rows } = await this.pool.query<{ size: string; last: string | null; titles: string; total: string; key: string | null; terms: string[] | null }>(
      `WITH win AS MATERIALIZED (
         SELECT p.key, title_rowid(p.title, p.key) AS rid, p.title_terms AS terms, p.year
         FROM posters p WHERE ${matching('$1')}
         ORDER BY rid LIMIT $2)
       SELECT (SELECT count(*) FROM win)::text AS size, (SELECT max(rid) FROM win)::text AS last,
              (SELECT titles FROM title_stats)::text AS titles, (SELECT terms FROM title_stats)::text AS total,
              page.key::text AS key, page.terms
       FROM (SELECT 1) one LEFT JOIN (SELECT win.key, win.terms FROM win ${joins} WHERE true ${where}) page ON true`,
      [match, this.window, ...params],
    );
    const first = rows[0]!;
    const score = bm25(terms, counts, Number(first.titles), Number(first.total));
    const ranked = rows
      .filter((row) => row.key !== null)
      .map((row) => ({ key: Number(row.key), score: score(row.terms!) }))
      .filter((row) => !after?.ranked || row.score > after.score || (row.score === after.score && row.key > after.key))
      .sort((a, b) => a.score - b.score || a.key - b.key)
      .slice(0, limit + 1);
    if (ranked.length > limit) {
      const last = ranked[limit - 1]!;
      return { keys: ranked.slice(0, limit).map((row) => row.key), next: { ranked: true, score: last.score, key: last.key } };
    }
    const keys = ranked.map((row) => row.key);
    if (Number(first.size) < this.window || first.last === null) return { keys, next: null };
    // The window is full: more matches may follow it, in word-count order.
    const rest = await this.rest(match, filter, Number(first.last), limit - keys.length, counts);
    return { keys: [...keys, ...rest.keys], next: rest.next };
  }

  /** How many titles each term is in, counted no further than one past the window. */
  private async counts(terms: Term[]): Promise<number[]> {
    const counted = terms.map(
      (_, i) => `(SELECT count(*) FROM (SELECT 1 FROM posters p WHERE ${matching(`$${i + 2}`)} LIMIT $1) x)::int AS n${i}`,
    );
    const { rows } = await this.pool.query<Record<string, number>>(`SELECT ${counted.join(', ')}`, [this.window + 1, ...terms.map((term) => tsquery([term]))]);
    return terms.map((_, i) => rows[0]![`n${i}`]!);
  }

  /**
   * Up to `limit` matches after a position in word-count order (title_rowid); `next` when more
   * follow. Where a term is in at most the window's titles, the matches are few: gathered through
   * the text index, then ordered (walking the order's index past titles that do not match could
   * read all of them); else that walk, which finds a page of a common term's matches at once.
   */
  private async rest(match: string, filter: TitleFilter, after: number, limit: number, counts: number[]): Promise<TitlePage> {
    const few = Math.min(...counts) <= this.window;
    const { joins, where, params } = filterSql(filter, 'p.key', 'p.year', 4);
    const { rows } = await this.pool.query<{ rid: string; key: string }>(
      few
        ? `WITH p AS MATERIALIZED (SELECT p.key, p.year, title_rowid(p.title, p.key) AS rid FROM posters p WHERE ${matching('$1')})
           SELECT p.rid::text AS rid, p.key::text AS key FROM p ${joins} WHERE p.rid > $2 ${where} ORDER BY p.rid LIMIT $3`
        : `SELECT title_rowid(p.title, p.key)::text AS rid, p.key::text AS key FROM posters p ${joins}
           WHERE ${matching('$1')} AND title_rowid(p.title, p.key) > $2 ${where}
           ORDER BY title_rowid(p.title, p.key) LIMIT $3`,
      [match, after, limit + 1, ...params],
    );
    const page = rows.slice(0, limit);
    const end = page.length > 0 ? Number(page[page.length - 1]!.rid) : after;
    return { keys: page.map((row) => Number(row.key)), next: rows.length > limit ? { ranked: false, rowid: end } : null };
  }
}

/**
 * Gives the terms of titles written before migration 008 (title_terms null); a server does so as it
 * connects. Returns how many it gave.
 */
export async function fillTitleTerms(pool: Pool): Promise<number> {
  let filled = 0;
  for (let last = '-1'; ; ) {
    const { rows } = await pool.query<{ key: string; title: string }>(
      'SELECT p.key::text AS key, p.title FROM posters p WHERE p.key > $1 AND p.title IS NOT NULL AND p.title_terms IS NULL ORDER BY p.key LIMIT 1000',
      [last],
    );
    if (rows.length === 0) return filled;
    last = rows[rows.length - 1]!.key;
    const given = rows.map((row) => ({ key: row.key, title: row.title, terms: titleTerms(row.title) }));
    // A title changed meanwhile got its terms with it, and is left as it is.
    const { rowCount } = await pool.query(
      `UPDATE posters p SET title_terms = ARRAY(SELECT jsonb_array_elements_text(v.terms))
       FROM jsonb_to_recordset($1::jsonb) AS v(key BIGINT, title TEXT, terms JSONB)
       WHERE p.key = v.key AND p.title = v.title AND p.title_terms IS NULL`,
      [JSON.stringify(given)],
    );
    filled += rowCount ?? 0;
  }
}

interface Term {
  text: string;
  prefix: boolean;
}

/** bm25's parameters, FTS5's. */
const K1 = 1.2;
const B = 0.75;

/**
 * titlePhrases' FTS5 phrases (`"word"`, `"wor"*`) as the terms the index holds: folded as titleTerms
 * folds a title (a phrase that folds to several terms requires each; the prefix is the last one's).
 */
function termsOf(phrases: string[]): Term[] {
  return phrases.flatMap((phrase) => {
    const prefix = phrase.endsWith('*');
    const texts = titleTerms(phrase.slice(1, prefix ? -2 : -1));
    return texts.map((text, i) => ({ text, prefix: prefix && i === texts.length - 1 }));
  });
}

/** titlePhrases' phrases as the tsquery that finds the titles holding all of them (null: none folds to a term). */
export function titleTsquery(phrases: string[]): string | null {
  const terms = termsOf(phrases);
  return terms.length > 0 ? tsquery(terms) : null;
}

/** The condition that poster `p`'s title matches the tsquery in parameter `param` (through the GIN index on its terms). */
function matching(param: string): string {
  return `title_lexemes(p.title_terms) @@ ${param}::tsquery AND p.title_terms IS NOT NULL`;
}

/** The terms as a tsquery, read as they are (no parser): each quoted, `:*` for a prefix, all required. */
function tsquery(terms: Term[]): string {
  return terms.map((term) => `'${term.text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'${term.prefix ? ':*' : ''}`).join(' & ');
}

/**
 * A title's bm25 score as FTS5's bm25() gives it (lower is better) for these terms, each in
 * `counts` of `titles` titles that hold `total` terms together.
 */
function bm25(terms: Term[], counts: number[], titles: number, total: number): (title: string[]) => number {
  const idf = counts.map((n) => {
    const value = Math.log((titles - n + 0.5) / (n + 0.5));
    return value <= 0 ? 1e-6 : value;
  });
  const average = titles > 0 ? total / titles : 1;
  return (title) => {
    let score = 0;
    terms.forEach((term, i) => {
      let hits = 0;
      for (const word of title) if (term.prefix ? word.startsWith(term.text) : word === term.text) hits++;
      score += (idf[i]! * hits * (K1 + 1)) / (hits + K1 * (1 - B + (B * title.length) / average));
    });
    return -score;
  };
}

/**
 * The joins and conditions of a filter on the poster whose key and year are the SQL expressions
 * `key` and `year`, their parameters numbered from `first`.
 */
function filterSql(filter: TitleFilter, key: string, year: string, first: number): { joins: string; where: string; params: unknown[] } {
  const params: unknown[] = [];
  const param = (value: unknown) => `$${first + params.push(value) - 1}`;
  const joins = filter.genre !== undefined ? `JOIN poster_genres g ON g.poster_key = ${key} AND g.genre = ${param(filter.genre)}` : '';
  let where = '';
  if (filter.yearFrom !== undefined) where += ` AND ${year} >= ${param(filter.yearFrom)}`;
  if (filter.yearTo !== undefined) where += ` AND ${year} <= ${param(filter.yearTo)}`;
  return { joins, where, params };
}
