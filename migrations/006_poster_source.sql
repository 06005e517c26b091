-- Where a poster came from, as JSON (e.g. {"tmdb_id": 603, "popularity": 71.2, "original_language": "en"}); null for CSV imports.
ALTER TABLE posters ADD COLUMN source TEXT;
