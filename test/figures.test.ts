import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { marquee } from './support/cli.js';

interface FiguresOutput {
  model_version: string;
  files: Record<'map' | 'grid' | 'recall' | 'majority', string>;
  map: { posters: number; cached: boolean };
  queries: string[];
}

async function png(file: string) {
  const meta = await sharp(file).metadata();
  assert.equal(meta.format, 'png', file);
  return { width: meta.width!, height: meta.height!, bytes: statSync(file).size };
}

describe('marquee figures', () => {
  const rows = subsetRows({ train: 40, val: 4, test: 10 });
  const dataDir = mkdtempSync(join(tmpdir(), 'marquee-data-'));
  const env = { MARQUEE_DATA_DIR: dataDir, MARQUEE_BASE_MODEL: testModelDir() };
  const run = (args: string[]) => {
    const result = marquee(['figures', ...args], env);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').pop()!) as FiguresOutput;
  };

  before(() => {
    // Index part of the catalog only: figures must embed the posters still missing.
    assert.equal(marquee(['import', makeCatalogDir(rows.slice(0, 30))], env).code, 0);
    const indexed = marquee(['index'], env);
    assert.equal(indexed.code, 0, indexed.stderr);
    assert.equal(marquee(['import', makeCatalogDir(rows)], env).code, 0);
  });

  it('draws the map, the retrieval grid and the per-genre bar charts as PNG, and caches the map', async () => {
    const out = mkdtempSync(join(tmpdir(), 'marquee-figures-'));
    const first = run(['--out', out, '--queries', '3', '--seed', '7']);
    assert.match(first.model_version, /^base-/);
    assert.deepEqual(first.map, { posters: rows.length, cached: false });
    assert.equal(first.queries.length, 3);
    const tests = new Set(rows.filter((r) => r.split === 'test').map((r) => r.id));
    for (const id of first.queries) assert.ok(tests.has(id), `${id} is a test poster`);

    const map = await png(first.files.map);
    assert.ok(map.width >= 1200 && map.height >= 1000 && map.bytes > 20_000, JSON.stringify(map));
    const grid = await png(first.files.grid);
    assert.ok(grid.width >= 900 && grid.height >= 3 * 300, JSON.stringify(grid));
    for (const file of [first.files.recall, first.files.majority]) {
      const chart = await png(file);
      assert.ok(chart.width >= 1000 && chart.height >= 400 && chart.bytes > 10_000, `${file}: ${JSON.stringify(chart)}`);
    }

    const cacheFile = join(dataDir, 'maps', `${first.model_version}.json`);
    const cache = JSON.parse(readFileSync(cacheFile, 'utf8'));
    assert.equal(cache.points.length, rows.length);
    for (const point of cache.points) assert.ok(point.x >= 0 && point.x <= 1 && point.y >= 0 && point.y <= 1);

    // A second run reuses the cached coordinates: same map, same picture; the grid follows --ids.
    const again = mkdtempSync(join(tmpdir(), 'marquee-figures-'));
    const chosen = [...tests].slice(0, 2);
    const second = run(['--out', again, '--ids', chosen.join(',')]);
    assert.equal(second.map.cached, true);
    assert.deepEqual(second.queries, chosen);
    assert.deepEqual(readFileSync(second.files.map), readFileSync(first.files.map));
    assert.ok((await png(second.files.grid)).height < grid.height, 'two rows instead of three');

    // Seeded: computed again from scratch, the map has the very same coordinates.
    rmSync(cacheFile);
    const third = run(['--out', again]);
    assert.equal(third.map.cached, false);
    assert.deepEqual(JSON.parse(readFileSync(cacheFile, 'utf8')).points, cache.points);
  });

  it('refuses bad options', () => {
    for (const args of [['--queries', '0'], ['--queries', '2', '--ids', 'x'], ['--ids', 'no-such-poster'], ['--version', 'nope'], ['--frobnicate']]) {
      const result = marquee(['figures', ...args], env);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    }
  });
});
