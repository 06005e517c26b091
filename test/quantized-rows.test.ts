import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { seededRandom } from '../src/figures/random.js';
import { QuantizedRows } from '../src/search/quantized-rows.js';
import { writeAtomically } from '../src/state/files.js';
import { compiledRowDots } from '../scripts/build-wasm.js';

const DIMS = 512;

/** 512-d unit vectors in tight clusters (a centre plus a little noise): many near-ties, as real posters have. */
function clustered(count: number, seed: number): Float32Array[] {
  const rand = seededRandom(seed);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const centres = Array.from({ length: 10 }, () => Float32Array.from({ length: DIMS }, gaussian));
  return Array.from({ length: count }, (_, i) => {
    const v = centres[i % centres.length]!.map((c) => c + 0.25 * gaussian());
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

function exactNearest(vectors: Float32Array[] | Map<number, Float32Array>, query: Float32Array, k: number): { key: number; distance: number }[] {
  return [...vectors.entries()]
    .map(([key, v]) => ({ key, distance: Math.sqrt(v.reduce((sum, x, d) => sum + (x - query[d]!) ** 2, 0)) }))
    .sort((a, b) => a.distance - b.distance)
    .slice(0, k);
}

describe('the int8 rows of an index', () => {
  const vectors = clustered(3000, 5);
  const queries = clustered(40, 6);
  const rows = new QuantizedRows(DIMS);
  vectors.forEach((v, key) => rows.set(key, v));
  const allKeys = vectors.map((_, key) => key);

  it('a scan finds the float32 nearest, in order, with float32 distances', () => {
    let sameOrder = 0;
    for (const query of queries) {
      const truth = exactNearest(vectors, query, 10);
      const found = rows.nearest(query, 10, allKeys);
      if (found.every((n, i) => n.key === truth[i]!.key)) sameOrder++;
      assert.deepEqual(new Set(found.map((n) => n.key)), new Set(truth.map((t) => t.key)), 'the same ten');
      found.forEach((n) => assert.ok(Math.abs(n.distance - exactNearest([vectors[n.key]!], query, 1)[0]!.distance) < 1e-5, 'distance within 1e-5'));
    }
    assert.equal(sameOrder, queries.length);
  });

  it('a coarse scan for several queries at once answers each as its own does, nearest first, the exact nearest among them', () => {
    const some = allKeys.filter((key) => key % 5 !== 2);
    const someVectors = new Map(some.map((key) => [key, vectors[key]!]));
    for (const count of [1, 8, 40]) {
      const each = rows.coarseNearestEach(queries.slice(0, 7), count, some);
      assert.equal(each.length, 7);
      each.forEach((found, j) => {
        const query = queries[j]!;
        assert.deepEqual(found, rows.coarseNearestEach([query], count, some)[0], `query ${j}, count ${count}`);
        assert.equal(found.length, count);
        assert.ok(found.every((key) => key % 5 !== 2), 'only the keys given');
        // The coarse layer ranks to about 1e-3: its order is the float32 one but for near-ties.
        const distances = found.map((key) => exactNearest([vectors[key]!], query, 1)[0]!.distance);
        distances.forEach((d, i) => assert.ok(i === 0 || d > distances[i - 1]! - 2e-3, `query ${j}: rank ${i} out of order by ${distances[i - 1]! - d}`));
        if (count >= 8) {
          const truth = exactNearest(someVectors, query, count - 8).map((t) => t.key);
          assert.ok(truth.every((key) => found.includes(key)), `query ${j}: the exact ${count - 8} nearest are among the ${count}`);
        }
      });
    }
    assert.deepEqual(rows.coarseNearestEach(queries.slice(0, 3), 8, []), [[], [], []]);
  });

  it('scans only the keys it is given, and forgets deleted and replaced rows', () => {
    const some = allKeys.filter((key) => key % 3 === 0);
    for (const query of queries.slice(0, 5)) {
      const found = rows.nearest(query, 8, some);
      assert.deepEqual(found.map((n) => n.key), exactNearest(vectors.filter((_, key) => key % 3 === 0), query, 8).map((t) => t.key * 3));
    }
    const copy = QuantizedRows.read(save(rows), DIMS);
    copy.delete(0);
    assert.ok(!copy.has(0));
    assert.deepEqual(copy.nearest(vectors[0]!, 1, [0, 1]).map((n) => n.key), [1]);
    copy.set(1, vectors[2]!);
    assert.ok(copy.nearest(vectors[2]!, 1, [1])[0]!.distance < 1e-4, 'the replaced row holds the new vector');
  });

  it('a saved copy keeps each key with its own vector after deletes, reused rows and replacements, and grows past its headroom', () => {
    const live = new Map<number, Float32Array>();
    const changed = new QuantizedRows(DIMS);
    const put = (target: QuantizedRows, key: number, vector: Float32Array) => (target.set(key, vector), live.set(key, vector));
    for (let key = 0; key < 1500; key++) put(changed, key, vectors[key]!);
    for (let key = 0; key < 1500; key += 7) (changed.delete(key), live.delete(key));
    for (let key = 5000; key < 5200; key++) put(changed, key, vectors[key - 3000]!); // into the freed rows
    put(changed, 3, vectors[2500]!);
    const copy = QuantizedRows.read(save(changed), DIMS);
    assert.equal(copy.size, live.size);
    const check = (rows: QuantizedRows) => {
      for (const query of queries.slice(0, 8)) {
        const found = rows.nearest(query, 8, live.keys());
        assert.deepEqual(found.map((n) => n.key), exactNearest(live, query, 8).map((t) => t.key));
      }
    };
    check(copy);
    for (let key = 6000; key < 6400; key++) put(copy, key, vectors[key - 6000 + 2600]!);
    check(copy);
  });

  it("rows' dot products with several vectors are float32's to 1e-5 (1e-4 at 7 dims), at any number of dims, in the order asked", () => {
    const dot = (a: Float32Array, b: Float32Array) => a.reduce((sum, x, d) => sum + x * b[d]!, 0);
    // 512 and 48 dims: the kernel's 16 at a time; 7 and 21: one at a time, and 16 then one at a time.
    for (const dims of [DIMS, 48, 7, 21]) {
      const some = dims === DIMS ? vectors.slice(0, 50) : vectors.slice(0, 50).map((v) => unit(v.subarray(0, dims)));
      const examples = dims === DIMS ? queries.slice(0, 5) : queries.slice(0, 5).map((v) => unit(v.subarray(0, dims)));
      const held = new QuantizedRows(dims);
      some.forEach((v, key) => held.set(key, v));
      const asked = [...some.keys()].reverse();
      const dots = held.dotProducts([...asked, 999], examples);
      asked.forEach((key, i) => {
        examples.forEach((e, j) => {
          const got = dots[i * examples.length + j]!;
          assert.ok(Math.abs(got - dot(some[key]!, e)) < (dims === DIMS ? 1e-5 : 1e-4), `dims ${dims}, row ${key}, vector ${j}: ${got} against ${dot(some[key]!, e)}`);
        });
      });
      assert.ok(dots.subarray(asked.length * examples.length).every(Number.isNaN), 'a key it does not hold');
    }
    // A call larger than the kernel's memory so far grows it, and one past its block of rows is made in blocks.
    const twice = [...allKeys, ...allKeys];
    const many = rows.dotProducts(twice, queries);
    for (const at of [0, 1234, allKeys.length - 1, 4095, 4096, twice.length - 1]) {
      assert.ok(Math.abs(many[at * queries.length + 39]! - dot(vectors[twice[at]!]!, queries[39]!)) < 1e-5, `row ${at} of ${twice.length}`);
    }
  });

  it('scores with the compile of src/search/row-dots.wat (scripts/build-wasm.ts)', async () => {
    assert.equal(readFileSync(new URL('../src/search/row-dots-wasm.ts', import.meta.url), 'utf8'), await compiledRowDots());
  });

  it('a saved copy reads back with the same answers; a damaged file is refused', () => {
    const file = save(rows);
    const copy = QuantizedRows.read(file, DIMS);
    assert.equal(copy.size, rows.size);
    for (const query of queries.slice(0, 10)) assert.deepEqual(copy.nearest(query, 8, allKeys), rows.nearest(query, 8, allKeys));
    assert.throws(() => QuantizedRows.read(file, 256), /dims/);
    truncateSync(file, statSync(file).size - 1);
    assert.throws(() => QuantizedRows.read(file, DIMS), /truncated/);
    const wrongMagic = readFileSync(save(rows));
    wrongMagic.writeUInt32LE(0x31525140, 0);
    writeFileSync(file, wrongMagic);
    assert.throws(() => QuantizedRows.read(file, DIMS), /not a rows file/);
  });
});

function save(rows: QuantizedRows): string {
  const file = join(mkdtempSync(join(tmpdir(), 'marquee-rows-')), 'x.rows');
  writeAtomically(file, (fd) => rows.write(fd));
  return file;
}

function unit(v: Float32Array): Float32Array {
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}
