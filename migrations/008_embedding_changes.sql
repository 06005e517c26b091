-- Every change to the embeddings, in order: the vector index of a version is a checkpoint that
-- records the last change it holds, and a start replays only the changes after it (src/search/
-- vector-index.ts), instead of reading and hashing every embedding. A row says "this poster's
-- embedding under this version changed"; what it is now (or that it is gone) is read from
-- `embeddings`. Rows up to a version's checkpoint are deleted once the checkpoint is saved.
CREATE TABLE embedding_changes (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  model_version TEXT NOT NULL,
  poster_key    INTEGER NOT NULL
);
CREATE INDEX embedding_changes_version ON embedding_changes (model_version, seq);

CREATE TRIGGER embedding_inserted AFTER INSERT ON embeddings BEGIN
  INSERT INTO embedding_changes (model_version, poster_key) VALUES (NEW.model_version, NEW.poster_key);
END;
CREATE TRIGGER embedding_updated AFTER UPDATE ON embeddings BEGIN
  INSERT INTO embedding_changes (model_version, poster_key) VALUES (NEW.model_version, NEW.poster_key);
END;
CREATE TRIGGER embedding_deleted AFTER DELETE ON embeddings BEGIN
  INSERT INTO embedding_changes (model_version, poster_key) VALUES (OLD.model_version, OLD.poster_key);
END;

-- Which posters a version has embedded, without reading the vectors: `embeddings` is WITHOUT ROWID,
-- so its primary key's pages hold every vector, and "what is missing" would read them all.
CREATE INDEX embeddings_keys ON embeddings (model_version, poster_key);
