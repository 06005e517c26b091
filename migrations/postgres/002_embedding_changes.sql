-- Embeddings and their change log. A log row carries the writer's transaction id, not a sequence:
-- a sequence is not commit order (a transaction that took 41 can commit after one that took 42),
-- so a replica reads the log below a transaction horizon (src/state/postgres/change-follower.ts),
-- below which every transaction has finished. A statement trigger wakes the replicas that LISTEN.
-- The poster_key's foreign key to `posters` comes with the catalog's table.
CREATE TABLE embeddings (
  model_version TEXT NOT NULL,
  precision     TEXT NOT NULL,
  poster_key    BIGINT NOT NULL,
  vector        BYTEA NOT NULL,
  PRIMARY KEY (model_version, precision, poster_key),
  FOREIGN KEY (model_version, precision) REFERENCES model_variants (version, precision) ON DELETE CASCADE
);

CREATE TABLE embedding_changes (
  txid          XID8 NOT NULL DEFAULT pg_current_xact_id(),
  model_version TEXT NOT NULL,
  precision     TEXT NOT NULL,
  poster_key    BIGINT NOT NULL
);
CREATE INDEX embedding_changes_txid ON embedding_changes (txid);

CREATE FUNCTION log_embedding_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO embedding_changes (model_version, precision, poster_key) VALUES (OLD.model_version, OLD.precision, OLD.poster_key);
  ELSE
    INSERT INTO embedding_changes (model_version, precision, poster_key) VALUES (NEW.model_version, NEW.precision, NEW.poster_key);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER embedding_changed AFTER INSERT OR UPDATE OR DELETE ON embeddings
  FOR EACH ROW EXECUTE FUNCTION log_embedding_change();

-- Delivered when the writer commits (never for a rollback), once per channel and payload per transaction.
CREATE FUNCTION notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('marquee_changes', '');
  RETURN NULL;
END $$;
CREATE TRIGGER embedding_changes_notify AFTER INSERT ON embedding_changes
  FOR EACH STATEMENT EXECUTE FUNCTION notify_changes();
