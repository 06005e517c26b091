-- Each poster's perceptual hash (src/search/perceptual-hash.ts), for near-duplicate checks and
-- GET /admin/duplicates: 256-bit DCT hashes of its picture, of its picture with a uniform border
-- trimmed, and of its centred 95 % and 85 %, 64 hex digits each. A row describes the picture whose
-- pixel_sha256 it names: one whose poster has since changed picture is stale, and the start-up
-- hashes that poster again.
CREATE TABLE poster_hashes (
  poster_key   INTEGER PRIMARY KEY REFERENCES posters (key) ON DELETE CASCADE,
  pixel_sha256 TEXT NOT NULL,
  whole        TEXT NOT NULL CHECK (length(whole) = 64),
  trimmed      TEXT NOT NULL CHECK (length(trimmed) = 64),
  crop_95      TEXT NOT NULL CHECK (length(crop_95) = 64),
  crop_85      TEXT NOT NULL CHECK (length(crop_85) = 64)
);
