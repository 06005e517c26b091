-- The latest `marquee eval` of each model version, served by GET /admin/models/{version}/report.
CREATE TABLE evaluations (
  model_version TEXT PRIMARY KEY REFERENCES model_versions (version) ON DELETE CASCADE,
  created_at    TEXT NOT NULL,
  document      TEXT NOT NULL,   -- the JSON document (src/eval/report.ts), byte for byte what --json writes
  markdown      TEXT NOT NULL    -- the Markdown report of the same run
);
