-- Retraining jobs. At most one job is unfinished at a time (enforced by the partial index).
CREATE TABLE jobs (
  id            TEXT PRIMARY KEY,
  kind          TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('queued', 'preparing', 'training', 'evaluating', 'indexing', 'swapping',
                                               'succeeded', 'failed', 'cancelled', 'rejected')),
  params        TEXT NOT NULL,   -- JSON: the training parameters after defaults
  progress      TEXT,            -- JSON: epoch, step, loss, img/s, ETA, ...
  metrics       TEXT,            -- JSON: the gate's figures for the candidate and the active model
  model_version TEXT,            -- the version this job produced
  error         TEXT,
  log_tail      TEXT,
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  finished_at   TEXT
);
CREATE UNIQUE INDEX jobs_one_unfinished ON jobs ((1))
  WHERE state IN ('queued', 'preparing', 'training', 'evaluating', 'indexing', 'swapping');
CREATE INDEX jobs_created_at ON jobs (created_at);

-- Where a version's PyTorch checkpoint is (relative to the data dir), to train from it later.
ALTER TABLE model_versions ADD COLUMN checkpoint_path TEXT;
