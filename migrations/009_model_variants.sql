-- A model version is served in one of its variants: `fp32`, the file it was registered with, and
-- `int8`, a quantised copy made by the training package (or the only one, for a model registered
-- already quantised, like the shipped default). Each variant has its own file and checksum, and
-- its own embeddings and index: the int8 model's vectors are not the float32 model's.
CREATE TABLE model_variants (
  version     TEXT NOT NULL REFERENCES model_versions (version) ON DELETE CASCADE,
  precision   TEXT NOT NULL CHECK (precision IN ('fp32', 'int8')),
  file_path   TEXT NOT NULL,           -- relative to the data dir
  file_sha256 TEXT NOT NULL,
  details     TEXT NOT NULL,           -- JSON: how it was made (quantisation settings, parity figures)
  created_at  TEXT NOT NULL,
  PRIMARY KEY (version, precision)
) WITHOUT ROWID;

INSERT INTO model_variants (version, precision, file_path, file_sha256, details, created_at)
  SELECT version,
         CASE WHEN json_extract(source, '$.precision') = 'int8' THEN 'int8' ELSE 'fp32' END,
         file_path, file_sha256,
         CASE WHEN json_extract(source, '$.quantization') IS NULL THEN '{}' ELSE json_object('quantization', json_extract(source, '$.quantization')) END,
         created_at
  FROM model_versions;

-- Embeddings and their change log name the variant too.
DROP TRIGGER embedding_inserted;
DROP TRIGGER embedding_updated;
DROP TRIGGER embedding_deleted;
DROP INDEX embeddings_keys;

CREATE TABLE embeddings_new (
  model_version TEXT NOT NULL,
  precision     TEXT NOT NULL,
  poster_key    INTEGER NOT NULL REFERENCES posters (key) ON DELETE CASCADE,
  vector        BLOB NOT NULL,            -- float32 little-endian, `dims` values
  PRIMARY KEY (model_version, precision, poster_key),
  FOREIGN KEY (model_version, precision) REFERENCES model_variants (version, precision) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO embeddings_new (model_version, precision, poster_key, vector)
  SELECT e.model_version, v.precision, e.poster_key, e.vector FROM embeddings e JOIN model_variants v ON v.version = e.model_version;
DROP TABLE embeddings;
ALTER TABLE embeddings_new RENAME TO embeddings;
CREATE INDEX embeddings_keys ON embeddings (model_version, precision, poster_key);

ALTER TABLE embedding_changes ADD COLUMN precision TEXT NOT NULL DEFAULT 'fp32';
UPDATE embedding_changes SET precision = coalesce((SELECT precision FROM model_variants v WHERE v.version = embedding_changes.model_version), 'fp32');
DROP INDEX embedding_changes_version;
CREATE INDEX embedding_changes_variant ON embedding_changes (model_version, precision, seq);

CREATE TRIGGER embedding_inserted AFTER INSERT ON embeddings BEGIN
  INSERT INTO embedding_changes (model_version, precision, poster_key) VALUES (NEW.model_version, NEW.precision, NEW.poster_key);
END;
CREATE TRIGGER embedding_updated AFTER UPDATE ON embeddings BEGIN
  INSERT INTO embedding_changes (model_version, precision, poster_key) VALUES (NEW.model_version, NEW.precision, NEW.poster_key);
END;
CREATE TRIGGER embedding_deleted AFTER DELETE ON embeddings BEGIN
  INSERT INTO embedding_changes (model_version, precision, poster_key) VALUES (OLD.model_version, OLD.precision, OLD.poster_key);
END;
