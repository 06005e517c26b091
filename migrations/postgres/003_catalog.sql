-- The catalog (SQLite migrations 001, 004, 005, 006, 011 and 012): posters, whose keys a sequence
-- hands out and never again; their genres for filters; the ids deleted through the API; the change
-- counters what is derived from the catalog records; and each poster's perceptual hash.
CREATE TABLE posters (
  key           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id            TEXT NOT NULL UNIQUE,
  title         TEXT,
  year          INTEGER,
  release_date  TEXT,
  genres        JSONB NOT NULL,            -- array, source order
  single_genre  TEXT NOT NULL,
  split         TEXT CHECK (split IN ('train', 'val', 'test')),
  image_path    TEXT NOT NULL,
  image_sha256  TEXT NOT NULL,
  pixel_sha256  TEXT NOT NULL,
  width         INTEGER NOT NULL,
  height        INTEGER NOT NULL,
  source        JSONB,
  imported_at   TEXT NOT NULL
);
CREATE INDEX posters_pixel_sha256 ON posters (pixel_sha256, key);

CREATE TABLE poster_genres (
  poster_key BIGINT NOT NULL REFERENCES posters (key) ON DELETE CASCADE,
  genre      TEXT NOT NULL,
  PRIMARY KEY (poster_key, genre)
);
CREATE INDEX poster_genres_genre ON poster_genres (genre, poster_key);

CREATE TABLE deleted_posters (
  id         TEXT PRIMARY KEY,
  deleted_at TEXT NOT NULL
);

CREATE TABLE catalog_state (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  changes  BIGINT NOT NULL,
  pictures BIGINT NOT NULL
);
INSERT INTO catalog_state (id, changes, pictures) VALUES (1, 0, 0);

CREATE FUNCTION count_catalog_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'UPDATE' THEN
    UPDATE catalog_state SET changes = changes + 1, pictures = pictures + 1;
  ELSIF OLD.pixel_sha256 IS DISTINCT FROM NEW.pixel_sha256 OR OLD.genres IS DISTINCT FROM NEW.genres
     OR OLD.single_genre IS DISTINCT FROM NEW.single_genre OR OLD.split IS DISTINCT FROM NEW.split THEN
    UPDATE catalog_state SET changes = changes + 1,
      pictures = pictures + CASE WHEN OLD.pixel_sha256 IS DISTINCT FROM NEW.pixel_sha256 THEN 1 ELSE 0 END;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE ON posters
  FOR EACH ROW EXECUTE FUNCTION count_catalog_change();

ALTER TABLE embeddings ADD FOREIGN KEY (poster_key) REFERENCES posters (key) ON DELETE CASCADE;

CREATE TABLE poster_hashes (
  poster_key   BIGINT PRIMARY KEY REFERENCES posters (key) ON DELETE CASCADE,
  pixel_sha256 TEXT NOT NULL,
  whole        TEXT NOT NULL CHECK (length(whole) = 64),
  trimmed      TEXT NOT NULL CHECK (length(trimmed) = 64),
  crop_95      TEXT NOT NULL CHECK (length(crop_95) = 64),
  crop_85      TEXT NOT NULL CHECK (length(crop_85) = 64)
);
