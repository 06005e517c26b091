import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HISTOGRAM_DIMS, hsvHistogram } from '../src/eval/colour-histogram.js';
import { exactKnn, keyedVectors, type KeyedVectors } from '../src/eval/knn.js';

function unitVectors(keys: number[], dims: number, seed: number): KeyedVectors {
  let state = seed;
  const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  const data = new Float32Array(keys.length * dims);
  for (let i = 0; i < keys.length; i++) {
    let norm = 0;
    for (let d = 0; d < dims; d++) norm += (data[i * dims + d] = random()) ** 2;
    for (let d = 0; d < dims; d++) data[i * dims + d]! /= Math.sqrt(norm);
  }
  return keyedVectors(keys, data, dims);
}

/** The obvious implementation: every similarity, sorted. */
function bruteForce(queries: KeyedVectors, gallery: KeyedVectors, k: number, includeSelf: boolean): number[][] {
  const rows: number[][] = [];
  for (let q = 0; q < queries.keys.length; q++) {
    const scored: { row: number; s: number }[] = [];
    for (let g = 0; g < gallery.keys.length; g++) {
      if (!includeSelf && gallery.keys[g] === queries.keys[q]) continue;
      let s = 0;
      for (let d = 0; d < queries.dims; d++) s += queries.data[q * queries.dims + d]! * gallery.data[g * gallery.dims + d]!;
      scored.push({ row: g, s });
    }
    scored.sort((a, b) => b.s - a.s || a.row - b.row);
    rows.push(scored.slice(0, k).map((x) => x.row));
  }
  return rows;
}

function rowsOf(result: ReturnType<typeof exactKnn>, queries: number): number[][] {
  return Array.from({ length: queries }, (_, q) => [...result.indices.subarray(q * result.k, (q + 1) * result.k)]);
}

describe('exact k-NN', () => {
  it('matches a brute-force search, nearest first, for query counts not a multiple of the block', () => {
    const gallery = unitVectors(Array.from({ length: 300 }, (_, i) => i + 1), 24, 7);
    const queries = unitVectors(Array.from({ length: 7 }, (_, i) => 1000 + i), 24, 11);
    for (const k of [1, 8, 150]) {
      const result = exactKnn(queries, gallery, k);
      assert.deepEqual(rowsOf(result, 7), bruteForce(queries, gallery, k, false));
      for (let q = 0; q < 7; q++) {
        for (let i = 1; i < k; i++) assert.ok(result.similarities[q * k + i - 1]! >= result.similarities[q * k + i]!);
      }
    }
  });

  it('never returns the query itself, even when it is in the gallery, unless asked to', () => {
    const all = unitVectors([10, 20, 30, 40, 50], 8, 3);
    const honest = exactKnn(all, all, 4);
    for (let q = 0; q < 5; q++) {
      const rows = rowsOf(honest, 5)[q]!;
      assert.equal(rows.length, 4);
      assert.ok(!rows.includes(q), `query ${q} found itself`);
    }
    assert.deepEqual(rowsOf(honest, 5), bruteForce(all, all, 4, false));
    const paper = exactKnn(all, all, 2, { includeSelf: true });
    for (let q = 0; q < 5; q++) {
      assert.equal(paper.indices[q * 2], q, 'with itself in the index, a poster is its own nearest');
      assert.ok(Math.abs(paper.similarities[q * 2]! - 1) < 1e-5);
    }
    // A query from outside the catalog (key -1) excludes nothing.
    const outside = keyedVectors([-1], all.data.slice(0, 8), 8);
    assert.equal(exactKnn(outside, all, 1).indices[0], 0);
  });

  it('pads with -1 when the gallery has fewer than k eligible rows, and orders equal similarities by gallery row', () => {
    const v = new Float32Array([1, 0, 0, 1, 1, 0, 1, 0]);
    const gallery = keyedVectors([1, 2, 3, 4], v, 2); // rows 0, 2 and 3 are the same vector
    const result = exactKnn(keyedVectors([2], new Float32Array([1, 0]), 2), gallery, 5);
    assert.deepEqual([...result.indices], [0, 2, 3, -1, -1]);
    assert.ok(Number.isNaN(result.similarities[3]!));
  });
});

describe('HSV colour histogram', () => {
  it('puts each pixel in its hue, saturation and value bin, square-roots the shares and has unit length', () => {
    // Two pure red pixels, one pure blue, one black.
    const data = Buffer.from([255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 0]);
    const histogram = hsvHistogram({ data, width: 2, height: 2 });
    assert.equal(histogram.length, HISTOGRAM_DIMS);
    const bin = (h: number, s: number, v: number) => (h * 4 + s) * 4 + v;
    assert.ok(Math.abs(histogram[bin(0, 3, 3)]! - Math.sqrt(2 / 4)) < 1e-6, 'red: hue 0°, full saturation and value');
    assert.ok(Math.abs(histogram[bin(5, 3, 3)]! - Math.sqrt(1 / 4)) < 1e-6, 'blue: hue 240° is bin 5 of 8');
    assert.ok(Math.abs(histogram[bin(0, 0, 0)]! - Math.sqrt(1 / 4)) < 1e-6, 'black: no hue, no saturation');
    assert.ok(Math.abs(histogram.reduce((a, x) => a + x * x, 0) - 1) < 1e-6);
  });
});
