-- The stores PostgreSQL holds so far (docs/cluster-plan.md): model versions and their variants, the
-- active model, retrain jobs and evaluations, as in the SQLite migrations 001, 002, 003, 009 and
-- 012. Times are the ISO strings the stores are given; JSON is jsonb, but an evaluation's document
-- is kept as text, byte for byte what --json wrote.
CREATE TABLE model_versions (
  version         TEXT PRIMARY KEY,
  file_path       TEXT NOT NULL,
  file_sha256     TEXT NOT NULL,
  dims            INTEGER NOT NULL,
  input_width     INTEGER NOT NULL,
  input_height    INTEGER NOT NULL,
  input_name      TEXT NOT NULL,
  output_name     TEXT NOT NULL,
  preprocessing   JSONB NOT NULL,
  source          JSONB NOT NULL,
  metrics         JSONB,
  checkpoint_path TEXT,
  created_at      TEXT NOT NULL
);

CREATE TABLE model_variants (
  version     TEXT NOT NULL REFERENCES model_versions (version) ON DELETE CASCADE,
  precision   TEXT NOT NULL CHECK (precision IN ('fp32', 'int8')),
  file_path   TEXT NOT NULL,
  file_sha256 TEXT NOT NULL,
  details     JSONB NOT NULL,
  created_at  TEXT NOT NULL,
  PRIMARY KEY (version, precision)
);

CREATE TABLE active_model (
  singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
  version      TEXT NOT NULL REFERENCES model_versions (version),
  activated_at TEXT NOT NULL
);

CREATE TABLE jobs (
  id            TEXT PRIMARY KEY,
  kind          TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('queued', 'preparing', 'training', 'evaluating', 'indexing', 'swapping',
                                               'succeeded', 'failed', 'cancelled', 'rejected')),
  params        JSONB NOT NULL,
  progress      JSONB,
  metrics       JSONB,
  model_version TEXT,
  error         TEXT,
  log_tail      TEXT,
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  finished_at   TEXT
);
-- At most one unfinished job, cluster-wide.
CREATE UNIQUE INDEX jobs_one_unfinished ON jobs ((1))
  WHERE state IN ('queued', 'preparing', 'training', 'evaluating', 'indexing', 'swapping');
CREATE INDEX jobs_created_at ON jobs (created_at);

CREATE TABLE evaluations (
  model_version       TEXT PRIMARY KEY REFERENCES model_versions (version) ON DELETE CASCADE,
  created_at          TEXT NOT NULL,
  document            TEXT NOT NULL,
  markdown            TEXT NOT NULL,
  catalog_fingerprint TEXT
);
