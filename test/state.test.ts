// State is sealed in src/state: one place opens the database, and a write across tables is one method.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { State } from '../src/state/state.js';

const SRC = join(import.meta.dirname, '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

const poster = (id: string) => ({
  id, title: null, year: null, releaseDate: null, genres: ['Drama'], singleGenre: 'Drama', split: null,
  imagePath: `images/${id}.jpg`, imageSha256: 'a'.repeat(64), pixelSha256: `pixels-${id}`, width: 2, height: 3,
}); // prettier-ignore
const hash = { whole: '1'.repeat(64), trimmed: '2'.repeat(64), crop95: '3'.repeat(64), crop85: '4'.repeat(64) };

describe('state', () => {
  it('no module outside src/state holds a database handle, opens one or runs a transaction', () => {
    const leaks: string[] = [];
    for (const file of sources(SRC)) {
      const path = relative(SRC, file);
      if (path.startsWith('state/')) continue;
      const text = readFileSync(file, 'utf8');
      if (/from '(?:\.\.?\/)+state\/db\.js'|from 'better-sqlite3'|\.transaction\(/.test(text)) leaks.push(path);
    }
    assert.deepEqual(leaks, []);
    assert.ok(sources(SRC).length > 50, 'the scan saw the source tree');
  });

  it('savePoster writes the poster, its embedding and its hash together, or none of them', () => {
    const state = State.inMemory();
    const unknownSpace = { version: 'no-such-model', precision: 'fp32' as const };
    assert.throws(() => state.savePoster(poster('p1'), 'now', { space: unknownSpace, vector: new Float32Array([1, 0]) }, hash));
    assert.equal(state.catalog.get('p1'), null, 'the poster went with the embedding that could not be stored');
    assert.equal(state.catalog.count(), 0);

    state.catalog.upsert(poster('p2'), 'now');
    state.catalog.delete('p2', 'now');
    assert.ok(state.catalog.isDeleted('p2'));
    assert.equal(state.catalog.importPoster(poster('p2'), 'now'), 'deleted', 'an import does not bring back a deleted poster');
    state.close();
  });
});
