-- Title search ranked as SQLite ranks it: bm25 over the same terms (src/state/postgres/titles.ts).
-- PostgreSQL's text search parsers split and fold by the database's locale ("spider-man" is three
-- words to one, non-ASCII letters separators to another), so the server writes each title's terms
-- as SQLite's own tokenizer makes them (src/state/sqlite/title-terms.ts) beside the title, and the
-- index is built on them as they are. Posters written before this migration (or by another writer
-- that leaves them NULL) get theirs when a server next connects.
ALTER TABLE posters ADD COLUMN title_terms TEXT[];
-- The titles still to be given their terms (none, once filled): what a connect looks for, at once.
CREATE INDEX posters_title_terms_missing ON posters (key) WHERE title IS NOT NULL AND title_terms IS NULL;

CREATE FUNCTION title_lexemes(terms TEXT[]) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT array_to_tsvector(coalesce(terms, '{}'::text[]))
$$;
CREATE INDEX posters_title_terms ON posters USING gin (title_lexemes(title_terms));

-- The order a query with a common term is listed in (SQLite's FTS rowid, migrations/010): the
-- title's word count (spaces between words plus one, at most 255), then key.
CREATE FUNCTION title_rowid(title TEXT, key BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (least(255, length(btrim(title, ' ')) - length(replace(btrim(title, ' '), ' ', '')) + 1)::bigint << 40) | key
$$;
CREATE INDEX posters_title_rowid ON posters (title_rowid(title, key)) WHERE title_terms IS NOT NULL;

-- bm25's collection figures: how many titles, and their terms together (for the average length).
CREATE TABLE title_stats (
  one    BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
  titles BIGINT NOT NULL,
  terms  BIGINT NOT NULL
);
INSERT INTO title_stats (titles, terms) VALUES (0, 0);

-- Counted per statement (one update of the row for a statement that writes many posters).
CREATE FUNCTION count_title_terms() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  more_titles BIGINT := 0;
  more_terms BIGINT := 0;
  titles BIGINT;
  terms BIGINT;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT count(title_terms), coalesce(sum(cardinality(title_terms)), 0) INTO titles, terms FROM old_rows;
    more_titles := more_titles - titles;
    more_terms := more_terms - terms;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    SELECT count(title_terms), coalesce(sum(cardinality(title_terms)), 0) INTO titles, terms FROM new_rows;
    more_titles := more_titles + titles;
    more_terms := more_terms + terms;
  END IF;
  IF more_titles <> 0 OR more_terms <> 0 THEN
    UPDATE title_stats SET titles = title_stats.titles + more_titles, terms = title_stats.terms + more_terms;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER title_terms_inserted AFTER INSERT ON posters REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_title_terms();
CREATE TRIGGER title_terms_updated AFTER UPDATE ON posters REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_title_terms();
CREATE TRIGGER title_terms_deleted AFTER DELETE ON posters REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION count_title_terms();

-- Giving a title its terms (the fill at connect) changes nothing a replica serves: not logged as a
-- change of the poster (migrations/postgres/005), which would have every replica re-read them all.
CREATE OR REPLACE FUNCTION log_poster_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF to_jsonb(OLD) - 'title_terms' = to_jsonb(NEW) - 'title_terms' THEN
    RETURN NULL;
  END IF;
  INSERT INTO embedding_changes (model_version, precision, poster_key)
    SELECT model_version, precision, poster_key FROM embeddings WHERE poster_key = NEW.key;
  RETURN NULL;
END $$;

DROP INDEX posters_title_search;
DROP FUNCTION title_query(TEXT);
DROP FUNCTION title_document(TEXT);
