-- Full-text search over poster titles (GET /posters?q=), kept by triggers on posters so that every
-- write (the import, the admin API, any other client of the database) is searchable when it commits.
-- FTS5, unicode61 with diacritics folded ("Amélie" is found by "amelie" and the other way round);
-- prefix indexes for the term being typed ("t", "th", "the" and "godf" are each one doclist to read;
-- a longer prefix merges the lists of the words it begins, fewer the longer it is).
--
-- Contentless: the titles stay in posters. A row's FTS rowid is not the poster's key but
-- (the title's word count << 40) | key: reading matches in rowid order then yields the titles with
-- the fewest words first, which is bm25's order when each term occurs once in each title, so that
-- a query matching a third of a million titles ranks a bounded window of them (src/state/titles.ts).
-- key = rowid & (2^40 - 1). Words are the spaces between them plus one, capped at 255.
CREATE VIRTUAL TABLE poster_titles USING fts5(
  title,
  content = '',
  tokenize = "unicode61 remove_diacritics 2",
  prefix = '1 2 3 4'
);

INSERT INTO poster_titles (rowid, title)
  SELECT (min(255, length(trim(title)) - length(replace(trim(title), ' ', '')) + 1) << 40) | key, title
  FROM posters WHERE title IS NOT NULL;

CREATE TRIGGER poster_title_inserted AFTER INSERT ON posters WHEN NEW.title IS NOT NULL BEGIN
  INSERT INTO poster_titles (rowid, title)
    VALUES ((min(255, length(trim(NEW.title)) - length(replace(trim(NEW.title), ' ', '')) + 1) << 40) | NEW.key, NEW.title);
END;

-- A contentless table forgets a row by being told its values again, exactly as they were indexed.
CREATE TRIGGER poster_title_deleted AFTER DELETE ON posters WHEN OLD.title IS NOT NULL BEGIN
  INSERT INTO poster_titles (poster_titles, rowid, title)
    VALUES ('delete', (min(255, length(trim(OLD.title)) - length(replace(trim(OLD.title), ' ', '')) + 1) << 40) | OLD.key, OLD.title);
END;

CREATE TRIGGER poster_title_updated AFTER UPDATE OF title ON posters WHEN OLD.title IS NOT NEW.title BEGIN
  INSERT INTO poster_titles (poster_titles, rowid, title)
    SELECT 'delete', (min(255, length(trim(OLD.title)) - length(replace(trim(OLD.title), ' ', '')) + 1) << 40) | OLD.key, OLD.title
    WHERE OLD.title IS NOT NULL;
  INSERT INTO poster_titles (rowid, title)
    SELECT (min(255, length(trim(NEW.title)) - length(replace(trim(NEW.title), ' ', '')) + 1) << 40) | NEW.key, NEW.title
    WHERE NEW.title IS NOT NULL;
END;
