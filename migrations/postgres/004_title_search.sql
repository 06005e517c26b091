-- Full-text search over poster titles (GET /posters?q=): words as the `simple` configuration splits
-- them (no stemming, no stop words: a title is a name), diacritics folded by unaccent ("Amélie" is
-- found by "amelie" and the other way round), indexed by GIN on an expression of the title.
CREATE EXTENSION IF NOT EXISTS unaccent;
-- unaccent() is only STABLE (its dictionary could change); an index needs an IMMUTABLE expression.
CREATE FUNCTION title_document(title TEXT) RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_tsvector('simple'::regconfig, public.unaccent('public.unaccent'::regdictionary, coalesce(title, '')))
$$;
-- A query's words, folded alike.
CREATE FUNCTION title_query(words TEXT) RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_tsquery('simple'::regconfig, public.unaccent('public.unaccent'::regdictionary, words))
$$;
CREATE INDEX posters_title_search ON posters USING gin (title_document(title));
