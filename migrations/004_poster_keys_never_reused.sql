-- A deleted poster's key is never handed out again (AUTOINCREMENT): an index entry or a client that
-- still holds an old key must not find another poster under it. SQLite cannot add AUTOINCREMENT
-- in place, so the table is rebuilt (migrate() runs this with foreign keys off and checks them after).
CREATE TABLE posters_new (
  key           INTEGER PRIMARY KEY AUTOINCREMENT,
  id            TEXT NOT NULL UNIQUE,
  title         TEXT,
  year          INTEGER,
  release_date  TEXT,
  genres        TEXT NOT NULL,            -- JSON array, source order
  single_genre  TEXT NOT NULL,
  split         TEXT CHECK (split IN ('train', 'val', 'test')),
  image_path    TEXT NOT NULL,            -- relative to the data dir
  image_sha256  TEXT NOT NULL,            -- of the stored file's bytes
  pixel_sha256  TEXT NOT NULL,            -- of the decoded sRGB pixels (see src/model/preprocess.ts)
  width         INTEGER NOT NULL,
  height        INTEGER NOT NULL,
  imported_at   TEXT NOT NULL
);
INSERT INTO posters_new (key, id, title, year, release_date, genres, single_genre, split, image_path, image_sha256, pixel_sha256, width, height, imported_at)
  SELECT key, id, title, year, release_date, genres, single_genre, split, image_path, image_sha256, pixel_sha256, width, height, imported_at FROM posters;
DROP TABLE posters;
ALTER TABLE posters_new RENAME TO posters;
CREATE INDEX posters_pixel_sha256 ON posters (pixel_sha256);
