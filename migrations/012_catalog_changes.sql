-- Counters of catalog changes, kept by triggers: what is derived from the catalog (an evaluation,
-- the embedding map) records them to tell whether it still describes the catalog, without hashing
-- every poster. `changes` counts posters added or removed and changes of a picture, genres, single
-- genre or split; `pictures` only what moves a map's points: posters added or removed, pictures changed.
CREATE TABLE catalog_state (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  changes  INTEGER NOT NULL,
  pictures INTEGER NOT NULL
);
INSERT INTO catalog_state (id, changes, pictures) SELECT 1, count(*), count(*) FROM posters;

CREATE TRIGGER catalog_poster_added AFTER INSERT ON posters BEGIN
  UPDATE catalog_state SET changes = changes + 1, pictures = pictures + 1;
END;
CREATE TRIGGER catalog_poster_removed AFTER DELETE ON posters BEGIN
  UPDATE catalog_state SET changes = changes + 1, pictures = pictures + 1;
END;
CREATE TRIGGER catalog_poster_changed AFTER UPDATE OF pixel_sha256, genres, single_genre, split ON posters
WHEN OLD.pixel_sha256 IS NOT NEW.pixel_sha256 OR OLD.genres IS NOT NEW.genres OR OLD.single_genre IS NOT NEW.single_genre OR OLD.split IS NOT NEW.split
BEGIN
  UPDATE catalog_state SET changes = changes + 1, pictures = pictures + (OLD.pixel_sha256 IS NOT NEW.pixel_sha256);
END;
