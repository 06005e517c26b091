import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { stateOf } from './support/backend.js';
import { makeCatalogDir, posterPath, subsetRows, toCsv } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { marquee } from './support/cli.js';

describe('marquee CLI', () => {
  it('explains itself and refuses unknown commands', () => {
    const help = marquee(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /serve[\s\S]*import <dir>[\s\S]*index/);
    const unknown = marquee(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
  });

  it('imports a catalog idempotently, reporting bad rows by line and skipping them', async () => {
    const good = subsetRows({ train: 6, val: 0, test: 0 });
    const rows = [
      ...good.slice(0, 3), // lines 2-4
      { ...good[3]!, genres: '' }, // line 5: no genres
      { ...good[4]!, split: 'holdout' }, // line 6: bad split
      { ...good[5]!, id: 'tt9999901', file: 'images/does-not-exist.jpg' }, // line 7: missing file
      { ...good[0]! }, // line 8: duplicate id
      { ...good[5]!, year: 'nineteen' }, // line 9: bad year
      { ...good[5]!, id: 'tt9999902', file: 'extra/notes.jpg' }, // line 10: not an image
      { ...good[5]!, id: 'tt9999903', file: '../escape.jpg' }, // line 11: outside the directory
      good[5]!, // line 12: fine
    ];
    const dir = makeCatalogDir(rows);
    writeFileSync(join(dir, 'extra', 'notes.jpg'), 'not a picture');
    const dataDir = mkdtempSync(join(tmpdir(), 'marquee-data-'));
    const first = marquee(['import', dir], { MARQUEE_DATA_DIR: dataDir });
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout);
    assert.deepEqual(report, { rows: 11, added: 4, updated: 0, unchanged: 0, deleted: 0, skipped: 7 });
    const lines = [...first.stderr.matchAll(/^line (\d+)/gm)].map((m) => Number(m[1]));
    assert.deepEqual(lines, [5, 6, 7, 8, 9, 10, 11]);
    assert.match(first.stderr, /line 5 \(\w+\): no genres/);
    assert.match(first.stderr, /line 8 \(\w+\): duplicate id/);
    assert.match(first.stderr, /line 10 \(tt9999902\): file "extra\/notes.jpg"/);

    const again = marquee(['import', dir], { MARQUEE_DATA_DIR: dataDir });
    assert.deepEqual(JSON.parse(again.stdout), { rows: 11, added: 0, updated: 0, unchanged: 4, deleted: 0, skipped: 7 });

    const retitled = rows.map((r, i) => (i === 0 ? { ...r, title: 'A New Title' } : r));
    writeFileSync(join(dir, 'movies.csv'), toCsv(retitled));
    assert.deepEqual(JSON.parse(marquee(['import', dir], { MARQUEE_DATA_DIR: dataDir }).stdout).updated, 1);
    const state = await stateOf({ MARQUEE_DATA_DIR: dataDir });
    try {
      assert.equal((await state.catalog.get(rows[0]!.id))?.title, 'A New Title');
      assert.equal(await state.catalog.count(), 4);
    } finally {
      await state.close();
    }
  });

  it('imports no file through a link out of the catalog, and no poster named "." or ".."', () => {
    const [inside, outside, other] = subsetRows({ train: 3, val: 0, test: 0 });
    const elsewhere = mkdtempSync(join(tmpdir(), 'marquee-elsewhere-'));
    mkdirSync(join(elsewhere, 'folder'));
    copyFileSync(posterPath(outside!.id), join(elsewhere, 'secret.jpg'));
    copyFileSync(posterPath(outside!.id), join(elsewhere, 'folder', 'secret.jpg'));
    const rows = [
      inside!, // line 2
      { ...outside!, file: 'extra/secret.jpg' }, // line 3: a link to a file outside
      { ...outside!, id: 'tt-through-folder', file: 'linked/secret.jpg' }, // line 4: through a linked folder
      { ...other!, id: 'tt-link-inside', file: 'extra/same.jpg' }, // line 5: a link that stays inside
      { ...other!, id: '.' }, // line 6
      { ...other!, id: '..' }, // line 7
    ];
    const dir = makeCatalogDir(rows);
    symlinkSync(join(elsewhere, 'secret.jpg'), join(dir, 'extra', 'secret.jpg'));
    symlinkSync(join(elsewhere, 'folder'), join(dir, 'linked'));
    symlinkSync(join('..', inside!.file), join(dir, 'extra', 'same.jpg'));
    const result = marquee(['import', dir], { MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')) });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { rows: 6, added: 2, updated: 0, unchanged: 0, deleted: 0, skipped: 4 });
    assert.match(result.stderr, /line 3 \(\w+\): file "extra\/secret.jpg" is outside the catalog directory/);
    assert.match(result.stderr, /line 4 \(tt-through-folder\): file "linked\/secret.jpg" is outside the catalog directory/);
    assert.match(result.stderr, /line 6 \(\.\): id "\." names a folder, not a poster/);
    assert.match(result.stderr, /line 7 \(\.\.\): id "\.\." names a folder, not a poster/);
  });

  it('re-embeds the catalog with the active model and rebuilds the index', () => {
    const rows = subsetRows({ train: 12, val: 0, test: 0 });
    const dataDir = mkdtempSync(join(tmpdir(), 'marquee-data-'));
    const env = { MARQUEE_DATA_DIR: dataDir, MARQUEE_BASE_MODEL: testModelDir() };
    assert.equal(marquee(['import', makeCatalogDir(rows)], env).code, 0);
    const result = marquee(['index'], env);
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout.trim().split('\n').pop()!);
    assert.equal(summary.embedded, 12);
    assert.equal(summary.indexed, 12);
    assert.match(summary.model_version, /^base-/);
  });
});
