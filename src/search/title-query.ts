/**
 * What a person types into a title search, as an FTS5 query: every term quoted, so that no input
 * can be read as FTS5 syntax (AND, NEAR, a stray quote or parenthesis), all terms required, and
 * the last one a prefix while it is still being typed ("star wa" finds "Star Wars").
 */

import { TITLE_TERM } from '../state/titles.js';

/**
 * A query's FTS5 phrases, one per term (their MATCH expression is them joined by spaces), or null
 * when it has no term (empty, whitespace, punctuation only). The last term is a prefix unless the
 * query ends in whitespace (it was typed whole). Diacritics need no care here: the tokenizer folds
 * the query's terms as it folded the titles.
 */
export function titlePhrases(query: string): string[] | null {
  const terms = query.normalize('NFC').match(TITLE_TERM);
  if (!terms) return null;
  const typing = !/\s$/u.test(query);
  return terms.map((term, i) => `"${term}"${typing && i === terms.length - 1 ? '*' : ''}`);
}
