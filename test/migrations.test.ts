import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openDb } from '../src/state/sqlite/db.js';
import { ROOT } from './support/paths.js';

const MIGRATIONS = join(ROOT, 'migrations');

/** A data dir's database as an older Marquee left it: the migrations up to `last` only. */
function databaseAt(last: number): string {
  const file = join(mkdtempSync(join(tmpdir(), 'marquee-db-')), 'marquee.db');
  const db = new Database(file);
  for (const name of readdirSync(MIGRATIONS).filter((f) => /^\d+_.*\.sql$/.test(f)).sort()) {
    if (Number.parseInt(name, 10) > last) continue;
    db.exec(readFileSync(join(MIGRATIONS, name), 'utf8'));
  }
  db.pragma(`user_version = ${last}`);
  return (db.close(), file);
}

function insertPoster(db: Database.Database, id: string): number {
  return Number(
    db
      .prepare(
        `INSERT INTO posters (id, genres, single_genre, image_path, image_sha256, pixel_sha256, width, height, imported_at)
         VALUES (?, '["Drama"]', 'Drama', ?, 'x', 'y', 1, 1, 'now')`,
      )
      .run(id, `images/${id}.jpg`).lastInsertRowid,
  );
}

describe('migrations', () => {
  it('upgrade a database of the previous schema keeping every row, and keys are never reused after', () => {
    const file = databaseAt(3);
    const old = new Database(file);
    old.pragma('foreign_keys = ON');
    const keys = ['a', 'b', 'c'].map((id) => insertPoster(old, id));
    for (const key of keys) old.prepare(`INSERT INTO poster_genres (poster_key, genre) VALUES (?, 'Drama')`).run(key);
    old
      .prepare(
        `INSERT INTO model_versions (version, file_path, file_sha256, dims, input_width, input_height, input_name, output_name, preprocessing, source, created_at)
         VALUES ('v', 'models/v.onnx', 's', 2, 1, 1, 'in', 'out', '{}', '{}', 'now')`,
      )
      .run();
    for (const key of keys) old.prepare(`INSERT INTO embeddings (model_version, poster_key, vector) VALUES ('v', ?, x'0000803f00000000')`).run(key);
    // The old schema hands a deleted key out again: what the migration ends.
    old.prepare('DELETE FROM posters WHERE key = ?').run(keys[2]);
    assert.equal(insertPoster(old, 'c2'), keys[2]);
    old.prepare(`INSERT INTO poster_genres (poster_key, genre) VALUES (?, 'Drama')`).run(keys[2]);
    old.prepare(`INSERT INTO embeddings (model_version, poster_key, vector) VALUES ('v', ?, x'0000803f00000000')`).run(keys[2]);
    old.close();

    const db = openDb(file);
    const latest = Math.max(...readdirSync(MIGRATIONS).map((name) => Number.parseInt(name, 10)).filter(Number.isFinite));
    assert.equal(db.pragma('user_version', { simple: true }), latest);
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys are enforced again');
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    assert.deepEqual(db.prepare('SELECT key, id FROM posters ORDER BY key').all(), [
      { key: keys[0], id: 'a' },
      { key: keys[1], id: 'b' },
      { key: keys[2], id: 'c2' },
    ]);
    assert.equal((db.prepare('SELECT count(*) AS n FROM poster_genres').get() as { n: number }).n, 3);
    assert.equal((db.prepare('SELECT count(*) AS n FROM embeddings').get() as { n: number }).n, 3);
    // The version's file became its float32 variant, which its embeddings now name.
    assert.deepEqual(db.prepare('SELECT version, precision, file_path FROM model_variants').all(), [{ version: 'v', precision: 'fp32', file_path: 'models/v.onnx' }]);
    assert.deepEqual(db.prepare('SELECT DISTINCT precision FROM embeddings').pluck().all(), ['fp32']);
    // Deleting still cascades, and the newest key is not handed out again.
    db.prepare('DELETE FROM posters WHERE key = ?').run(keys[2]);
    assert.equal((db.prepare('SELECT count(*) AS n FROM embeddings').get() as { n: number }).n, 2);
    assert.ok(insertPoster(db, 'd') > keys[2]!);
    db.prepare("DELETE FROM model_versions WHERE version = 'v'").run();
    assert.equal((db.prepare('SELECT count(*) AS n FROM model_variants').get() as { n: number }).n, 0);
    assert.equal((db.prepare('SELECT count(*) AS n FROM embeddings').get() as { n: number }).n, 0);
    db.close();
  });
});
