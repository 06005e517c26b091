-- A poster's metadata changed (title, year, genres, ...): logged as a change of each of its
-- embeddings, so that every replica's filters and answers follow it as they follow its vectors
-- (a replica re-reads the poster and its vector, and finds the vector unchanged). A new picture
-- deletes the poster's embeddings (logged by their own trigger); a deleted poster's cascade does too.
CREATE FUNCTION log_poster_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO embedding_changes (model_version, precision, poster_key)
    SELECT model_version, precision, poster_key FROM embeddings WHERE poster_key = NEW.key;
  RETURN NULL;
END $$;
CREATE TRIGGER poster_changed AFTER UPDATE ON posters
  FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION log_poster_change();

-- A write answers the id of its poster's latest change (Marquee-Change), found by this index.
CREATE INDEX embedding_changes_poster ON embedding_changes (poster_key, txid);
