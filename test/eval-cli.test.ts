import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { validationSummary } from '../src/eval/evaluate.js';
import { stableStringify } from '../src/eval/report.js';
import { registerModelDir } from '../src/model/registration.js';
import { stateOf } from './support/backend.js';
import { makeCatalogDir, sharedRows, subsetRows, toCsv } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { marquee } from './support/cli.js';

const METRICS = ['recall@1', 'recall@3', 'recall@8', 'majority@1', 'majority@3', 'majority@5', 'majority@8', 'any_genre_hit@1', 'map@r', 'vote_accuracy', 'vote_f1'];

/** Every figure of every system is null or within [0, 1], and the headline ones are numbers. */
function assertFigures(doc: any): void {
  for (const [id, system] of Object.entries<any>(doc.systems)) {
    for (const average of ['micro', 'macro']) {
      assert.deepEqual(Object.keys(system[average]), [...METRICS].sort(), `${id} ${average}`);
      for (const [metric, value] of Object.entries(system[average])) {
        if (metric === 'map@r' && id === 'paper_protocol') assert.equal(value, null);
        else assert.ok(typeof value === 'number' && value >= 0 && value <= 1, `${id} ${average} ${metric} = ${value}`);
      }
    }
    for (const [genre, row] of Object.entries<any>(system.per_genre)) {
      for (const metric of METRICS) {
        const value = row[metric];
        assert.ok(value === null || (value >= 0 && value <= 1), `${id} ${genre} ${metric} = ${value}`);
      }
    }
  }
}

describe('marquee eval', () => {
  const rows = subsetRows({ train: 60, val: 10, test: 24 });
  const dataDir = mkdtempSync(join(tmpdir(), 'marquee-data-'));
  const out = mkdtempSync(join(tmpdir(), 'marquee-eval-'));
  const env = { MARQUEE_DATA_DIR: dataDir, MARQUEE_BASE_MODEL: testModelDir() };

  before(() => {
    // Index part of the catalog, then import the rest: eval must embed the posters still missing.
    const tests = rows.filter((r) => r.split === 'test');
    const first = rows.filter((r) => r.split === 'train' || (r.split === 'test' && tests.indexOf(r) < 12));
    assert.equal(marquee(['import', makeCatalogDir(first)], env).code, 0);
    const indexed = marquee(['index'], env);
    assert.equal(indexed.code, 0, indexed.stderr);
    assert.equal(marquee(['import', makeCatalogDir(rows)], env).code, 0);
  });

  it('evaluates the active model on test vs train beside the baselines and the paper protocol', () => {
    const json = join(out, 'base.json');
    const md = join(out, 'base.md');
    const result = marquee(['eval', '--protocol', 'paper', '--json', json, '--out', md], env);
    assert.equal(result.code, 0, result.stderr);
    const text = readFileSync(json, 'utf8');
    const doc = JSON.parse(text);
    assert.equal(text, stableStringify(doc), 'keys sorted and figures rounded, ready to diff');
    assert.equal(text.match(/\d{4}-\d\d-\d\dT\d\d:/g)?.length, 1, 'one timestamp: created_at');
    assert.equal(doc.format, 'marquee-eval/1');
    assert.match(doc.model_version, /^base-/);
    assert.equal(doc.search, 'exact');
    assert.deepEqual(doc.queries.source, 'split:test');
    assert.equal(doc.queries.count, 24, 'all test posters, including those imported after `index`');
    assert.deepEqual(doc.gallery, { source: 'split:train', count: 60 });
    assert.deepEqual(Object.keys(doc.systems), ['hsv_histogram', 'majority_genre', 'model', 'paper_protocol']);
    assert.ok(doc.notes.some((n: string) => n.includes('itself the untrained base model')));
    assertFigures(doc);

    // diversity: 0 is the answer without it (its vote is the model's vote); 0.5 spreads the answers apart
    assert.deepEqual(doc.diversity.map((d: any) => d.diversity), [0, 0.25, 0.5, 0.75]);
    const [none, , half] = doc.diversity;
    assert.equal(none.vote_map, doc.genre_classifiers.model_vote.map);
    assert.ok(half.mean_pairwise_similarity < none.mean_pairwise_similarity, JSON.stringify(doc.diversity));

    const honest = doc.systems.model;
    const paper = doc.systems.paper_protocol;
    assert.equal(paper.queries, 94);
    assert.equal(paper.micro['recall@1'], 1, 'every poster finds itself first');
    assert.ok(honest.micro['recall@1'] <= paper.micro['recall@1']);
    assert.ok(honest.micro['map@r'] > 0);
    assert.equal(Object.values<any>(honest.per_genre).reduce((n, row) => n + row.queries, 0), 24);

    // Always answering the gallery's majority genre scores exactly the share of queries of that genre.
    const train = rows.filter((r) => r.split === 'train');
    const test = rows.filter((r) => r.split === 'test');
    const counts = new Map<string, number>();
    for (const r of train) counts.set(r.single_genre, (counts.get(r.single_genre) ?? 0) + 1);
    const majority = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]![0];
    const share = test.filter((r) => r.single_genre === majority).length / test.length;
    const baseline = doc.systems.majority_genre;
    assert.equal(baseline.label, `always "${majority}"`);
    for (const metric of ['recall@1', 'recall@8', 'majority@5', 'vote_accuracy', 'map@r']) {
      assert.ok(Math.abs(baseline.micro[metric] - share) < 1e-4, `${metric}: ${baseline.micro[metric]} vs ${share}`);
    }

    const report = readFileSync(md, 'utf8');
    assert.match(report, /^# Evaluation of base-/);
    assert.match(report, /\| System \| Recall@1 \|/);
    assert.match(report, /paper's protocol/);
    assert.match(report, /HSV histogram 8×4×4/);
  });

  it('--index measures the served index and reports its recall against exact search', () => {
    const json = join(out, 'index.json');
    const result = marquee(['eval', '--index', '--json', json, '--out', join(out, 'index.md')], env);
    assert.equal(result.code, 0, result.stderr);
    const doc = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(doc.search, 'index');
    assert.deepEqual(Object.keys(doc.index_recall_vs_exact), ['@1', '@8']);
    for (const value of Object.values<number>(doc.index_recall_vs_exact)) assert.ok(value >= 0.9 && value <= 1, `recall vs exact ${value}`);
    assert.match(doc.systems.model.label, /served index/);
    assert.deepEqual(doc.diversity, [], 'measured on exact answers only');
    assertFigures(doc);
  });

  it('--queries evaluates an external CSV against the catalog; unknown genres are misses and listed', () => {
    const known = rows.find((r) => r.split === 'test')!;
    const outsider = sharedRows().find((r) => r.split === 'train' && !rows.some((x) => x.id === r.id))!;
    const dir = makeCatalogDir([known, outsider]);
    writeFileSync(
      join(dir, 'movies.csv'),
      toCsv([
        { ...known, id: 'q-known' },
        { ...outsider, id: 'q-unknown', genres: 'Zombie-Opera|Drama', single_genre: 'Zombie-Opera' },
        { ...outsider, id: 'q-bad', genres: '' },
      ]),
    );
    const json = join(out, 'queries.json');
    const result = marquee(['eval', '--queries', join(dir, 'movies.csv'), '--json', json, '--out', join(out, 'queries.md')], env);
    assert.equal(result.code, 0, result.stderr);
    const doc = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(doc.queries.source, 'csv:movies.csv');
    assert.equal(doc.queries.count, 2);
    assert.equal(doc.queries.in_catalog, 1, 'the known poster is recognised by its pixels and never matches itself');
    assert.deepEqual(doc.queries.skipped, [{ line: 4, id: 'q-bad', reason: 'no genres' }]);
    assert.deepEqual(doc.queries.genres_missing_from_gallery, { 'Zombie-Opera': 1 });
    assert.deepEqual(doc.gallery, { source: 'catalog:all', count: 94 });
    const zombie = doc.systems.model.per_genre['Zombie-Opera'];
    assert.equal(zombie.queries, 1);
    for (const metric of ['recall@8', 'majority@8', 'map@r', 'vote_accuracy']) assert.equal(zombie[metric], 0, metric);
    assertFigures(doc);
    assert.match(readFileSync(join(out, 'queries.md'), 'utf8'), /Zombie-Opera \(1\)/);
  });

  it('--version evaluates another version, embedding it first, with the untrained base model as a baseline', async () => {
    // The same network registered under another kind: a non-base version whose figures must equal the base's.
    const state = await stateOf(env);
    const candidate = await registerModelDir(testModelDir(), 'candidate', dataDir, state.models);
    assert.equal(await state.embeddings.count(candidate), 0);
    await state.close();
    const json = join(out, 'candidate.json');
    const result = marquee(['eval', '--version', candidate.version, '--json', json, '--out', join(out, 'candidate.md')], env);
    assert.equal(result.code, 0, result.stderr);
    const doc = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(doc.model_version, candidate.version);
    assert.match(doc.base_model_version, /^base-/);
    assert.deepEqual(Object.keys(doc.systems), ['base_model', 'hsv_histogram', 'majority_genre', 'model']);
    assert.deepEqual(doc.systems.base_model.micro, doc.systems.model.micro);
    assert.deepEqual(doc.notes, [`${candidate.version} has no genre head: the genre endpoint serves its vote.`]);
    assertFigures(doc);

    // The retrain gate's figure: val queries against train, from the embeddings eval just stored.
    const again = await stateOf(env);
    const { catalog, embeddings } = again;
    const summary = await validationSummary({ catalog, embeddings }, candidate);
    // Recomputed here from the stored vectors: each val poster's 8 nearest train posters by dot product (unit
    // vectors), a hit when one shares its single genre.
    const stored = await embeddings.load(candidate, candidate.dims);
    const vectorOf = new Map([...stored.keys].map((key, i) => [Number(key), stored.vectors.subarray(i * stored.dims, (i + 1) * stored.dims)]));
    const dot = (a: Float32Array, b: Float32Array) => a.reduce((sum, x, i) => sum + x * b[i]!, 0);
    const posters = await catalog.all();
    const train = posters.filter((p) => p.split === 'train');
    const hits = posters
      .filter((p) => p.split === 'val')
      .map((query) => {
        const scored = train.map((p) => ({ p, similarity: dot(vectorOf.get(p.key)!, vectorOf.get(query.key)!) }));
        const nearest = scored.sort((a, b) => b.similarity - a.similarity).slice(0, 8);
        return nearest.some(({ p }) => p.singleGenre === query.singleGenre) ? 1 : 0;
      });
    await again.close();
    assert.equal(summary.queries, 10);
    assert.equal(hits.length, 10);
    assert.equal(summary.micro['recall@8'], hits.reduce((a: number, b: number) => a + b, 0) / hits.length);
  });

  it('refuses bad options', () => {
    const result = marquee(['eval', '--gallery', 'everything'], env);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--gallery must be train, train\+val, all/);
    assert.equal(marquee(['eval', '--frobnicate'], env).code, 2);
  });
});
