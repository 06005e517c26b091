import type { PosterTitles, TitleFilter, TitlePage, TitlePosition } from '../titles.js';
import type { Pool } from './db.js';

/**
 * Title search on PostgreSQL's full-text search (migrations/postgres/004): every word of the query
 * required, the last a prefix while it is typed, ranked by ts_rank (best first, ties by key),
 * paged by the last rank and key. The phrases are titlePhrases' FTS5 ones (`"word"`, `"wor"*`),
 * read back into words; what the tokenizers keep of a word differs a little (PostgreSQL's `simple`
 * splits some punctuation FTS5 keeps), so the two backends may differ on such titles.
 * Unlike SQLite's, it ranks every match: a word in a third of a million titles is ranked whole.
 */
export class PostgresPosterTitles implements PosterTitles {
  constructor(private readonly pool: Pool) {}

  async search(phrases: string[], filter: TitleFilter, limit: number, after: TitlePosition | null): Promise<TitlePage> {
    const params: unknown[] = [];
    const param = (value: unknown) => `$${params.push(value)}`;
    const query = `title_query(${param(tsquery(phrases))})`;
    const joins = filter.genre !== undefined ? `JOIN poster_genres g ON g.poster_key = p.key AND g.genre = ${param(filter.genre)}` : '';
    const where = [`title_document(p.title) @@ ${query}`];
    if (filter.yearFrom !== undefined) where.push(`p.year >= ${param(filter.yearFrom)}`);
    if (filter.yearTo !== undefined) where.push(`p.year <= ${param(filter.yearTo)}`);
    // The score is minus the rank, so that lower is better as with SQLite's bm25 and the cursors compare alike.
    const score = `(-ts_rank(title_document(p.title), ${query}))::float8`;
    if (after?.ranked) where.push(`(${score} > ${param(after.score)} OR (${score} = ${param(after.score)} AND p.key > ${param(after.key)}))`);
    const { rows } = await this.pool.query<{ key: string; score: number }>(
      `SELECT p.key::text AS key, ${score} AS score FROM posters p ${joins} WHERE ${where.join(' AND ')} ORDER BY score, p.key LIMIT ${param(limit + 1)}`,
      params,
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { keys: page.map((r) => Number(r.key)), next: rows.length > limit && last ? { ranked: true, score: last.score, key: Number(last.key) } : null };
  }
}

/** titlePhrases' FTS5 phrases as tsquery text (title_query folds it): each word quoted, `:*` for a prefix, all required. */
function tsquery(phrases: string[]): string {
  return phrases
    .map((phrase) => {
      const prefix = phrase.endsWith('*');
      const word = phrase.slice(1, prefix ? -2 : -1);
      return `'${word.replaceAll("'", "''").replaceAll('\\', '\\\\')}'${prefix ? ':*' : ''}`;
    })
    .join(' & ');
}
