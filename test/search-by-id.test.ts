import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 60, val: 10, test: 10 });
const taken = new Set(rows.map((r) => r.id));
const later = sharedRows().find((r) => r.split === 'train' && !taken.has(r.id))!;
const ids = (results: { id: string }[]) => results.map((r) => r.id);

describe('search by a catalog poster, and the relevance floor', () => {
  let server: RunningServer;
  let env: Record<string, string>;
  before(async () => {
    env = { MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir() };
    server = await startServer(env);
    env.MARQUEE_DATA_DIR = server.dataDir;
  });
  after(async () => {
    await server.stop();
  });

  it('GET /posters/{id}/similar answers as the upload of its image does, without the poster itself', async () => {
    const poster = rows[7]!;
    const uploaded = await upload(`${server.url}/posters/similar?k=6&genre=Drama`, readFileSync(posterPath(poster.id)));
    const byId = await (await fetch(`${server.url}/posters/${poster.id}/similar?k=5&genre=Drama`)).json();
    assert.equal(byId.catalog_match.id, poster.id);
    assert.equal(byId.results.length, 5);
    assert.ok(!ids(byId.results).includes(poster.id));
    const expected = uploaded.body.results.filter((r: { id: string }) => r.id !== poster.id).slice(0, 5);
    assert.deepEqual(ids(byId.results), ids(expected));
    byId.results.forEach((r: { distance: number }, i: number) => assert.ok(Math.abs(r.distance - expected[i].distance) < 1e-4));
    assert.equal(byId.truncated, false);
  });

  it('GET /posters/{id}/genre is the vote of the upload, the poster never voting for itself', async () => {
    const poster = rows[12]!;
    const uploaded = await upload(`${server.url}/posters/genre?k=5`, readFileSync(posterPath(poster.id)));
    const byId = await (await fetch(`${server.url}/posters/${poster.id}/genre?k=5`)).json();
    assert.deepEqual(ids(byId.neighbors), ids(uploaded.body.neighbors));
    assert.ok(!ids(byId.neighbors).includes(poster.id));
    assert.equal(byId.prediction.genre, uploaded.body.prediction.genre);
    assert.deepEqual(byId.scores.map((s: { genre: string }) => s.genre), uploaded.body.scores.map((s: { genre: string }) => s.genre));
  });

  it('min_similarity drops the neighbours under the floor and says so', async () => {
    const poster = rows[3]!;
    const all = await (await fetch(`${server.url}/posters/${poster.id}/similar?k=8`)).json();
    const floor = (all.results[2].similarity + all.results[3].similarity) / 2;
    const floored = await (await fetch(`${server.url}/posters/${poster.id}/similar?k=8&min_similarity=${floor}`)).json();
    assert.deepEqual(ids(floored.results), ids(all.results).slice(0, 3));
    assert.equal(floored.truncated, true);
    const open = await (await fetch(`${server.url}/posters/${poster.id}/similar?k=8&min_similarity=-1`)).json();
    assert.equal(open.results.length, 8);
    assert.equal(open.truncated, false);
    const uploaded = await upload(`${server.url}/posters/similar?k=8&min_similarity=${floor}`, readFileSync(posterPath(poster.id)));
    assert.ok(uploaded.body.results.every((r: { similarity: number }) => r.similarity >= floor));
    const bad = await fetch(`${server.url}/posters/${poster.id}/similar?min_similarity=2`);
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.code, 'invalid_request');
  });

  it('answers 404 for an unknown poster, and embeds one imported beside the server', async () => {
    for (const path of ['similar', 'genre']) {
      const response = await fetch(`${server.url}/posters/tt-none/${path}`);
      assert.equal(response.status, 404);
      assert.equal((await response.json()).error.code, 'not_found');
    }
    assert.equal(marquee(['import', makeCatalogDir([later])], env).code, 0);
    const byId = await fetch(`${server.url}/posters/${later.id}/similar?k=3`);
    assert.equal(byId.status, 200);
    const uploaded = await upload(`${server.url}/posters/similar?k=3`, readFileSync(posterPath(later.id)));
    assert.deepEqual(ids((await byId.json()).results), ids(uploaded.body.results));
  });
});
