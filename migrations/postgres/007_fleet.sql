-- The servers of a cluster and a model swap they make together (issue 17, step 6). Each server
-- records a heartbeat while it serves; a model version to be swapped in is a candidate that every
-- live server loads (its engine and index, kept current by the change log) and reports ready; then
-- one transaction makes it active (active_model), and every server switches to it on its next look.
CREATE TABLE servers (
  id         TEXT PRIMARY KEY,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_candidates (
  version      TEXT NOT NULL,
  precision    TEXT NOT NULL,
  requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (version, precision),
  FOREIGN KEY (version, precision) REFERENCES model_variants (version, precision) ON DELETE CASCADE
);

CREATE TABLE model_ready (
  version   TEXT NOT NULL,
  precision TEXT NOT NULL,
  server    TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
  ready_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (version, precision, server),
  FOREIGN KEY (version, precision) REFERENCES model_candidates (version, precision) ON DELETE CASCADE
);
