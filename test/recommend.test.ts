import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { PosterFilters } from '../src/search/poster-filters.js';
import { Searcher } from '../src/search/searcher.js';
import { VectorIndex } from '../src/search/vector-index.js';
import { indexPath } from '../src/service/engine.js';
import { bestScoreCandidates } from '../src/service/recommend.js';
import { seededRandom } from '../src/figures/random.js';
import { stateOf } from './support/backend.js';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

/**
 * POST /posters/recommend and diversity, against a real server over real posters. The expected
 * answers are computed here from every catalog poster's embedding (POST /posters/embed of its
 * image) by the strategies' definitions, and compared within a tolerance for the small
 * differences between an upload's embedding, the stored one and the int8 rows.
 */

const rows = subsetRows({ train: 60, val: 10, test: 10 });
/** An expansion whose eighth (best_score's first round) is still past the catalog's size. */
const EXHAUSTIVE_EXPANSION = 16 * rows.length;
const ids = rows.map((r) => r.id);
const image = (id: string) => readFileSync(posterPath(id));
const EPS = 2e-3;

type Result = { id: string; similarity: number; distance: number };
type Answer = { model_version: string; k: number; results: Result[]; truncated: boolean };

const dot = (a: number[], b: number[]) => a.reduce((sum, x, i) => sum + x * b[i]!, 0);
const unit = (v: number[]) => {
  const norm = Math.sqrt(dot(v, v));
  return v.map((x) => x / norm);
};
const sigmoid = (x: number) => 0.5 * (1 + x / (1 + Math.abs(x)));

async function recommendJson(server: RunningServer, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

/** The form: each example a file (`{ file: id }`, that poster's image) or an id, in order; the settings as fields. */
async function recommendForm(
  server: RunningServer,
  examples: { positive?: ({ file: string } | string)[]; negative?: ({ file: string } | string)[] },
  settings: Record<string, string | number> = {},
): Promise<{ status: number; body: any }> {
  const form = new FormData();
  for (const field of ['positive', 'negative'] as const) {
    for (const example of examples[field] ?? []) {
      if (typeof example === 'string') form.append(field, example);
      else form.append(field, new Blob([new Uint8Array(image(example.file))], { type: 'image/jpeg' }), `${example.file}.jpg`);
    }
  }
  for (const [name, value] of Object.entries(settings)) form.append(name, String(value));
  const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', body: form });
  return { status: response.status, body: await response.json() };
}

async function getJson(server: RunningServer, path: string): Promise<any> {
  const response = await fetch(`${server.url}${path}`);
  assert.equal(response.status, 200, path);
  return response.json();
}

const comparable = (answer: Answer) => ({ model_version: answer.model_version, k: answer.k, results: answer.results, truncated: answer.truncated });

/**
 * Asserts that the results are the k best of `candidates` by `score` (ties within EPS in any order),
 * best first, each shown with `shown` as its similarity.
 */
function assertBest(results: Result[], candidates: string[], score: (id: string) => number, shown: (id: string) => number, k: number): void {
  assert.equal(results.length, Math.min(k, candidates.length));
  const returned = new Set(results.map((r) => r.id));
  for (const r of results) assert.ok(candidates.includes(r.id), `${r.id} is a candidate`);
  const worstReturned = Math.min(...results.map((r) => score(r.id)));
  for (const id of candidates) if (!returned.has(id)) assert.ok(score(id) <= worstReturned + EPS, `${id} (${score(id)}) left out for one scoring ${worstReturned}`);
  for (let i = 1; i < results.length; i++) assert.ok(score(results[i - 1]!.id) >= score(results[i]!.id) - EPS, 'best first');
  for (const r of results) {
    assert.ok(Math.abs(r.similarity - shown(r.id)) < EPS, `${r.id}: similarity ${r.similarity}, expected ${shown(r.id)}`);
    assert.ok(Math.abs(r.distance - Math.sqrt(Math.max(0, 2 - 2 * r.similarity))) < 1e-6);
  }
}

/** Maximal marginal relevance over the pool, as the issue defines diversity. */
function mmr(pool: string[], relevance: (id: string) => number, vectors: Map<string, number[]>, k: number, diversity: number): string[] {
  const picked: string[] = [];
  while (picked.length < Math.min(k, pool.length)) {
    let best = '';
    let bestValue = -Infinity;
    for (const id of pool) {
      if (picked.includes(id)) continue;
      const penalty = picked.length ? Math.max(...picked.map((p) => dot(vectors.get(p)!, vectors.get(id)!))) : 0;
      const value = (1 - diversity) * relevance(id) - diversity * penalty;
      if (value > bestValue) [best, bestValue] = [id, value];
    }
    picked.push(best);
  }
  return picked;
}

const meanPairwise = (list: string[], vectors: Map<string, number[]>) => {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++, n++) sum += dot(vectors.get(list[i]!)!, vectors.get(list[j]!)!);
  return sum / n;
};

describe('recommend and diversity', () => {
  let server: RunningServer;
  const vectors = new Map<string, number[]>();
  before(async () => {
    // An expansion past the catalog's size makes the graph's searches exhaustive, best_score's first
    // round included (an eighth of it): the answers here are checked against scoring every poster,
    // and HNSW's recall is approximate, build to build.
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_INDEX_EXPANSION: String(EXHAUSTIVE_EXPANSION) });
    for (const id of ids) {
      const embedded = await upload(`${server.url}/posters/embed`, image(id));
      assert.equal(embedded.status, 200);
      vectors.set(id, embedded.body.embedding);
    }
  });
  after(async () => {
    await server.stop();
  });

  const genreOf = (id: string) => rows.find((r) => r.id === id)!.genres.split('|');
  const commonGenre = () => {
    const counts = new Map<string, number>();
    for (const r of rows) for (const g of r.genres.split('|')) counts.set(g, (counts.get(g) ?? 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1])[0]![0];
  };

  it('answers one positive and no negative exactly as GET /posters/{id}/similar, whatever the strategy, by JSON or form', async () => {
    const genre = commonGenre();
    for (const [i, query] of [{}, { k: 5, genre }, { k: 6, min_similarity: 0.5 }, { k: 4, diversity: 0.5 }, { k: 3, year_from: 1980, year_to: 1990 }].entries()) {
      const id = ids[3 + 7 * i]!;
      const similar = await getJson(server, `/posters/${id}/similar?${new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]))}`);
      for (const strategy of ['average_vector', 'best_score']) {
        const json = await recommendJson(server, { positive: [id], strategy, ...query });
        assert.equal(json.status, 200, JSON.stringify(json.body));
        assert.deepEqual(comparable(json.body), comparable(similar), `${strategy} ${JSON.stringify(query)}`);
        assert.equal(json.body.strategy, strategy);
        assert.deepEqual(json.body.positive.map((e: any) => [e.source, e.poster.id]), [['poster', id]]);
        const form = await recommendForm(server, { positive: [id] }, { strategy, ...(query as Record<string, string | number>) });
        assert.deepEqual(comparable(form.body), comparable(similar), `form ${strategy} ${JSON.stringify(query)}`);
      }
    }
  });

  it('average_vector ranks by the sum of the positives minus the negatives, made unit length', async () => {
    const positive = [ids[0]!, ids[5]!, ids[11]!];
    const negative = [ids[20]!, ids[33]!];
    const query = unit(vectors.get(positive[0]!)!.map((_, d) => positive.reduce((s, id) => s + vectors.get(id)![d]!, 0) - negative.reduce((s, id) => s + vectors.get(id)![d]!, 0)));
    const candidates = ids.filter((id) => !positive.includes(id) && !negative.includes(id));
    const score = (id: string) => dot(query, vectors.get(id)!);
    for (const k of [8, 20]) {
      const answer = await recommendJson(server, { positive, negative, k });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assertBest(answer.body.results, candidates, score, score, k);
    }
    const genre = commonGenre();
    const filtered = await recommendJson(server, { positive, negative, k: 5, genre });
    assertBest(filtered.body.results, candidates.filter((id) => genreOf(id).includes(genre)), score, score, 5);
  });

  it("best_score scores as Qdrant defines it, each result shown with its similarity to the nearest positive", async () => {
    const positive = [ids[2]!, ids[9]!, ids[40]!];
    const negative = [ids[15]!, ids[61]!];
    const best = (id: string) => Math.max(...positive.map((p) => dot(vectors.get(p)!, vectors.get(id)!)));
    const worst = (id: string) => Math.max(...negative.map((n) => dot(vectors.get(n)!, vectors.get(id)!)));
    const score = (id: string) => (best(id) > worst(id) ? sigmoid(best(id)) : -sigmoid(worst(id)));
    const candidates = ids.filter((id) => !positive.includes(id) && !negative.includes(id));
    for (const k of [8, 30]) {
      const answer = await recommendJson(server, { positive, negative, k, strategy: 'best_score' });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assertBest(answer.body.results, candidates, score, best, k);
    }
    const genre = commonGenre();
    const filtered = await recommendJson(server, { positive, negative, k: 6, strategy: 'best_score', genre });
    assertBest(filtered.body.results, candidates.filter((id) => genreOf(id).includes(genre)), score, best, 6);
    // Negatives only pull the score down: with every candidate nearer a negative, the farthest from them come first.
    const repelled = await recommendJson(server, { positive: [ids[2]], negative: candidates.slice(0, 15), k: 5, strategy: 'best_score' });
    assert.equal(repelled.status, 200);
    assert.equal(repelled.body.results.length, 5);
    assert.ok(repelled.body.results.every((r: Result) => !candidates.slice(0, 15).includes(r.id)));
  });

  it('never returns an example, uploads included (nor the catalog poster with their pixels), and an upload counts as its pixels', async () => {
    const [a, b, c, d] = [ids[1]!, ids[4]!, ids[7]!, ids[8]!];
    const form = await recommendForm(server, { positive: [{ file: a }, c, { file: b }], negative: [d] }, { k: 30 });
    assert.equal(form.status, 200, JSON.stringify(form.body));
    const returned = form.body.results.map((r: Result) => r.id);
    for (const example of [a, b, c, d]) assert.ok(!returned.includes(example), `${example} is an example`);
    assert.deepEqual(
      form.body.positive.map((e: any) => [e.source, e.poster?.id]),
      [['upload', a], ['poster', c], ['upload', b]],
    );
    assert.deepEqual(form.body.negative.map((e: any) => [e.source, e.poster?.id]), [['poster', d]]);
    const byIds = await recommendJson(server, { positive: [a, c, b], negative: [d], k: 30 });
    assert.deepEqual(returned, byIds.body.results.map((r: Result) => r.id));
    form.body.results.forEach((r: Result, i: number) => assert.ok(Math.abs(r.similarity - byIds.body.results[i].similarity) < 1e-4));
  });

  it('answers bad requests in the one error shape', async () => {
    const cases: [string, () => Promise<{ status: number; body: any }>, number, string][] = [
      ['unknown id', () => recommendJson(server, { positive: [ids[0], 'tt-none'] }), 404, 'not_found'],
      ['unknown negative id', () => recommendForm(server, { positive: [{ file: ids[0]! }], negative: ['tt-none'] }), 404, 'not_found'],
      ['17 examples', () => recommendJson(server, { positive: ids.slice(0, 10), negative: ids.slice(10, 17) }), 400, 'too_many_examples'],
      ['17 examples in a form', () => recommendForm(server, { positive: [...ids.slice(0, 14), { file: ids[20]! }], negative: [ids[30]!, ids[31]!] }), 400, 'too_many_examples'],
      ['17 files', () => recommendForm(server, { positive: ids.slice(0, 17).map((file) => ({ file })) }), 400, 'too_many_examples'],
      ['five files of 9 MB: more than one request may hold (4 uploads of the 10 MB limit)', async () => {
        const form = new FormData();
        for (let i = 0; i < 5; i++) form.append('positive', new Blob([new Uint8Array(9 * 1024 * 1024)], { type: 'image/jpeg' }), `big-${i}.jpg`);
        const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', body: form });
        return { status: response.status, body: await response.json() };
      }, 413, 'upload_too_large'],
      ['a bad strategy', () => recommendJson(server, { positive: [ids[0]], strategy: 'sum_scores' }), 400, 'invalid_request'],
      ['a bad strategy in a form', () => recommendForm(server, { positive: [ids[0]!] }, { strategy: 'nearest' }), 400, 'invalid_request'],
      ['no positive', () => recommendJson(server, { positive: [], negative: [ids[0]] }), 400, 'invalid_request'],
      ['no positive in a form', () => recommendForm(server, { negative: [ids[0]!] }), 400, 'invalid_request'],
      ['one poster both ways', () => recommendJson(server, { positive: [ids[0], ids[1]], negative: [ids[1]] }), 400, 'invalid_request'],
      ['one poster both ways, as an id and as an upload of its picture', () => recommendForm(server, { positive: [ids[0]!, ids[1]!], negative: [{ file: ids[1]! }] }), 400, 'invalid_request'],
      ['k out of range in a form', () => recommendForm(server, { positive: [ids[0]!] }, { k: 0 }), 400, 'invalid_request'],
      ['years the wrong way round', () => recommendJson(server, { positive: [ids[0]], year_from: 2000, year_to: 1990 }), 400, 'invalid_request'],
      ['an unknown field', () => recommendJson(server, { positive: [ids[0]], limit: 3 }), 400, 'invalid_request'],
      ['an unknown form field', () => recommendForm(server, { positive: [ids[0]!] }, { limit: 3 }), 400, 'invalid_request'],
      ['a setting twice', async () => {
        const form = new FormData();
        form.append('positive', ids[0]!);
        form.append('k', '3');
        form.append('k', '4');
        const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', body: form });
        return { status: response.status, body: await response.json() };
      }, 400, 'invalid_request'],
      ['a file in another field', async () => {
        const form = new FormData();
        form.append('positive', ids[0]!);
        form.append('image', new Blob([new Uint8Array(image(ids[1]!))], { type: 'image/jpeg' }), 'x.jpg');
        const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', body: form });
        return { status: response.status, body: await response.json() };
      }, 400, 'wrong_field'],
      ['not an image', async () => {
        const form = new FormData();
        form.append('positive', new Blob(['not an image'], { type: 'image/jpeg' }), 'x.jpg');
        const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', body: form });
        return { status: response.status, body: await response.json() };
      }, 415, 'unsupported_image'],
      ['no body', async () => {
        const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST' });
        return { status: response.status, body: await response.json() };
      }, 400, 'invalid_request'],
      ['text', async () => {
        const response = await fetch(`${server.url}/posters/recommend`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: ids[0] });
        return { status: response.status, body: await response.json() };
      }, 415, 'unsupported_media_type'],
    ];
    for (const [name, send, status, code] of cases) {
      const answer = await send();
      assert.equal(answer.status, status, `${name}: ${JSON.stringify(answer.body)}`);
      assert.deepEqual(Object.keys(answer.body.error).sort(), ['code', 'message'], name);
      assert.equal(answer.body.error.code, code, `${name}: ${answer.body.error.message}`);
    }
    // 16 examples are allowed.
    assert.equal((await recommendJson(server, { positive: ids.slice(0, 10), negative: ids.slice(10, 16) })).status, 200);
  });

  it('diversity 0 is the answer without it, exactly; 0.5 picks by maximal marginal relevance and spreads the answers', async () => {
    const k = 8;
    let plainSpread = 0;
    let diverseSpread = 0;
    const queries = [ids[0]!, ids[13]!, ids[26]!, ids[39]!, ids[52]!];
    for (const id of queries) {
      const plain = await getJson(server, `/posters/${id}/similar?k=${k}`);
      assert.deepEqual(await getJson(server, `/posters/${id}/similar?k=${k}&diversity=0`), plain);
      const uploaded = await upload(`${server.url}/posters/similar?k=${k}`, image(id));
      assert.deepEqual((await upload(`${server.url}/posters/similar?k=${k}&diversity=0`, image(id))).body, uploaded.body);
      const recommended = await recommendJson(server, { positive: [id, ids[60]], negative: [ids[70]], k });
      assert.deepEqual((await recommendJson(server, { positive: [id, ids[60]], negative: [ids[70]], k, diversity: 0 })).body, recommended.body);

      const diverse = await getJson(server, `/posters/${id}/similar?k=${k}&diversity=0.5`);
      const relevance = (other: string) => dot(vectors.get(id)!, vectors.get(other)!);
      const pool = ids.filter((other) => other !== id).sort((x, y) => relevance(y) - relevance(x)).slice(0, 4 * k);
      assert.deepEqual(diverse.results.map((r: Result) => r.id), mmr(pool, relevance, vectors, k, 0.5), `the picks for ${id}`);
      plainSpread += meanPairwise(plain.results.map((r: Result) => r.id), vectors) / queries.length;
      diverseSpread += meanPairwise(diverse.results.map((r: Result) => r.id), vectors) / queries.length;
    }
    assert.ok(diverseSpread < plainSpread - 0.01, `mean pairwise similarity ${diverseSpread.toFixed(4)} at 0.5 against ${plainSpread.toFixed(4)}`);
  });

  it('is counted in Prometheus by route, as title search is', async () => {
    await recommendJson(server, { positive: [ids[0]] });
    await getJson(server, '/posters?q=the');
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /marquee_http_requests_total\{[^}]*route="\/posters\/recommend"[^}]*status="200"[^}]*\} [1-9]/);
    assert.match(metrics, /marquee_http_requests_total\{[^}]*route="\/posters\/recommend"[^}]*status="404"[^}]*\} [1-9]/);
    assert.match(metrics, /marquee_http_request_duration_seconds_count\{[^}]*route="\/posters\/recommend"/);
    assert.match(metrics, /marquee_http_requests_total\{[^}]*route="\/posters"[^}]*status="200"[^}]*\} [1-9]/);
  });

  it("best_score's search from the positives' neighbours finds what scoring every poster finds (the server stopped, its index opened here)", async () => {
    await server.stop();
    const state = await stateOf({ MARQUEE_DATA_DIR: server.dataDir });
    const { catalog, embeddings } = state;
    const model = (await state.models.active())!;
    const snapshot = await embeddings.snapshot(model, model.dims);
    const index = VectorIndex.open(indexPath(server.dataDir, model), snapshot.source, { expansion: EXHAUSTIVE_EXPANSION });
    const filters = await PosterFilters.inPages((after) => catalog.filterFieldsAfter(after, 1000));
    const searcher = new Searcher(index, (key) => embeddings.get(model, key), filters, (keys) => catalog.getMany(keys));
    const keys = (await catalog.all()).map((p) => p.key);
    const rand = seededRandom(18);
    const genre = commonGenre();
    let compared = 0;
    for (let t = 0; t < 12; t++) {
      const examples = new Set<number>();
      while (examples.size < 5) examples.add(keys[Math.floor(rand() * keys.length)]!);
      const [p1, p2, p3, n1, n2] = await Promise.all([...examples].map(async (key) => (await embeddings.get(model, key))!));
      for (const [wanted, filter] of [[8, {}], [32, {}], [6, { genre }]] as const) {
        const run = (limit: number) => bestScoreCandidates(searcher, [p1!, p2!, p3!], [n1!, n2!], filter, examples, wanted, limit).slice(0, wanted);
        const [byNeighbours, whole] = [run(0), run(Number.POSITIVE_INFINITY)];
        assert.deepEqual(byNeighbours.map((r) => r.neighbor.key), whole.map((r) => r.neighbor.key), `examples ${[...examples]}, ${wanted} wanted`);
        byNeighbours.forEach((r, i) => assert.ok(Math.abs(r.relevance - whole[i]!.relevance) < 1e-9));
        compared += 1;
      }
    }
    assert.equal(compared, 36);
    // One positive: the best `wanted` are its own `wanted` nearest, so one round proves them (the reach
    // read in the graph's distances differed from the kernel's by rounding, and searched again).
    const rounds: number[] = [];
    const candidatesEach = searcher.candidatesEach.bind(searcher);
    searcher.candidatesEach = (...args) => (rounds.push(args[1]), candidatesEach(...args));
    for (let t = 0; t < 12; t++) {
      const key = keys[Math.floor(rand() * keys.length)]!;
      for (const filter of [{}, { genre }]) {
        rounds.length = 0;
        bestScoreCandidates(searcher, [(await embeddings.get(model, key))!], [], filter, new Set([key]), 8, 0);
        assert.deepEqual(rounds, [8], `poster ${key}, ${JSON.stringify(filter)}: one round of 8`);
      }
    }
    snapshot.release?.();
    await state.close();
  });
});
