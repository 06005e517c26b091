import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pairedDifference, seriesFigures, seriesKey, seriesOf } from '../src/eval/series.js';
import { sharedRows } from './support/catalog.js';

describe('film series from titles, and the same-series measure', () => {
  it('finds the stems of sequels and subtitles, and leaves titles that only look alike apart', () => {
    const stem = (t: string) => seriesKey(t)?.stem ?? null;
    assert.equal(stem('Toy Story 2'), 'toy story');
    assert.equal(stem('Blade II'), 'blade');
    assert.equal(stem('The Last Exorcism Part II'), 'last exorcism');
    assert.equal(stem("Wayne's World 2"), 'waynes world');
    assert.equal(stem('Star Wars: Episode I - The Phantom Menace'), 'star wars');
    assert.equal(stem('Men in Black (a.k.a. MIB)'), 'men in black');
    assert.equal(stem('Apollo 13'), 'apollo 13', 'a two-digit number is part of the title');
    assert.equal(stem('Mission: Impossible'), null, 'a one-word stem cut at a colon is no series');
    assert.equal(stem('Rio 2'), 'rio');
    assert.deepEqual(seriesKey('Heat'), { stem: 'heat', marked: false });
    const groups = seriesOf(['Heat', 'The Heat', 'Rio', 'Rio 2', 'Saw', 'Saw III', 'Saw IV', null].map((title, key) => ({ key, title })));
    assert.deepEqual([...groups], [['rio', [2, 3]], ['saw', [4, 5, 6]]], '"Heat" and "The Heat" are two films, not a series');
  });

  it('groups the demo catalog into series a reader recognises', () => {
    const rows = sharedRows();
    const groups = seriesOf(rows.map((r, key) => ({ key, title: r.title || null })));
    const titles = (stem: string) => (groups.get(stem) ?? []).map((k) => rows[k]!.title).sort();
    // derived from the data: every titled "Toy Story" sequel in the catalog is in its series
    const toyStory = rows.filter((r) => /^Toy Story( \d)?$/.test(r.title)).map((r) => r.title).sort();
    assert.ok(toyStory.length >= 2, `the catalog's titled Toy Story films: ${toyStory.join(', ')}`);
    assert.deepEqual(titles('toy story'), toyStory);
    assert.ok(groups.size > 50, `${groups.size} series`);
    for (const members of groups.values()) assert.ok(members.length >= 2);
  });

  it('counts a query when a series member is among its k nearest, never the query itself', () => {
    const series = new Map([['rio', [1, 2]], ['saw', [3, 4, 5]]]);
    const gallery = new Set([2, 4, 9]);
    // query 1 (rio): member 2 at rank 3; query 3 (saw): member 4 at rank 1; query 7: no series; query 5 (saw): 4 absent
    const figures = seriesFigures([1, 3, 7, 5], [[9, 9, 2], [4], [2], [9]], gallery, series);
    assert.equal(figures.queries, 3);
    assert.deepEqual(figures.hits, { '@1': 1 / 3, '@8': 2 / 3 });
    assert.deepEqual(figures.perQuery, [1, 1, 0]);
  });

  it('says when a difference is more than the choice of queries explains', () => {
    const better = pairedDifference(Array(60).fill(1), Array(60).fill(0).map((_, i) => (i % 3 === 0 ? 1 : 0)))!;
    assert.ok(better.low > 0 && Math.abs(better.mean - 40 / 60) < 1e-9);
    const same = pairedDifference([1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 1, 0])!;
    assert.ok(same.low < 0 && same.high > 0);
  });
});
