-- Posters deleted through the API: the catalog import (at every start, or `marquee import`) does
-- not bring them back. Adding the id again through the API removes it from here.
CREATE TABLE deleted_posters (
  id          TEXT PRIMARY KEY,
  deleted_at  TEXT NOT NULL
) WITHOUT ROWID;
