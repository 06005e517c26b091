-- How far each variant's change log (migrations/008) has been pruned: a checkpoint of the index
-- that holds changes only up to an earlier point cannot be brought up to date by replaying the log,
-- whose rows it lacks are gone, so a start rebuilds it instead (src/search/vector-index.ts). That
-- happens when the files of a newer checkpoint are lost after the prune committed (a power loss
-- before the rename reached the disk, a data dir restored from an older copy). Databases that
-- pruned before this table existed start with no record (0): their next prune records one.
CREATE TABLE embedding_changes_pruned (
  model_version TEXT NOT NULL,
  precision     TEXT NOT NULL,
  through_seq   INTEGER NOT NULL,
  PRIMARY KEY (model_version, precision)
) WITHOUT ROWID;
