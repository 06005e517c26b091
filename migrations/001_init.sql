-- Catalog: one row per poster. `key` is the integer id used by the vector index.
CREATE TABLE posters (
  key           INTEGER PRIMARY KEY,
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
CREATE INDEX posters_pixel_sha256 ON posters (pixel_sha256);

CREATE TABLE poster_genres (
  poster_key INTEGER NOT NULL REFERENCES posters (key) ON DELETE CASCADE,
  genre      TEXT NOT NULL,
  PRIMARY KEY (poster_key, genre)
) WITHOUT ROWID;
CREATE INDEX poster_genres_genre ON poster_genres (genre, poster_key);

-- Embedding models. The ONNX file lives under the data dir; this row is its identity.
CREATE TABLE model_versions (
  version        TEXT PRIMARY KEY,
  file_path      TEXT NOT NULL,           -- relative to the data dir
  file_sha256    TEXT NOT NULL,
  dims           INTEGER NOT NULL,
  input_width    INTEGER NOT NULL,
  input_height   INTEGER NOT NULL,
  input_name     TEXT NOT NULL,
  output_name    TEXT NOT NULL,
  preprocessing  TEXT NOT NULL,           -- JSON PreprocessingSpec
  source         TEXT NOT NULL,           -- JSON: how the model was made (export-base sidecar, training run)
  metrics        TEXT,                    -- JSON, null until evaluated
  created_at     TEXT NOT NULL
);

-- Exactly one row once a model is active.
CREATE TABLE active_model (
  singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
  version      TEXT NOT NULL REFERENCES model_versions (version),
  activated_at TEXT NOT NULL
);

CREATE TABLE embeddings (
  model_version TEXT NOT NULL REFERENCES model_versions (version) ON DELETE CASCADE,
  poster_key    INTEGER NOT NULL REFERENCES posters (key) ON DELETE CASCADE,
  vector        BLOB NOT NULL,            -- float32 little-endian, `dims` values
  PRIMARY KEY (model_version, poster_key)
) WITHOUT ROWID;
