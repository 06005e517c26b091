import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { makeCatalogDir, posterPath, sharedRows, subsetRows, type Row } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { ROOT } from './support/paths.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 100, val: 10, test: 10 });
const catalogIds = new Set(rows.map((r) => r.id));
const outsider = sharedRows().find((r) => r.split === 'test' && !catalogIds.has(r.id))!;
let server: RunningServer;

function genreCounts(list: Row[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const row of list) for (const g of row.genres.split('|')) counts.set(g, (counts.get(g) ?? 0) + 1);
  return counts;
}

describe('poster API on a real server', () => {
  before(async () => {
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir() });
  });
  after(async () => {
    assert.equal(await server.stop(), 0, 'clean shutdown');
  });

  it('is alive and ready with the whole catalog indexed', async () => {
    assert.deepEqual(await (await fetch(`${server.url}/health`)).json(), { status: 'ok' });
    const ready = (await (await fetch(`${server.url}/ready`)).json()) as Record<string, unknown>;
    assert.equal(ready.status, 'ready');
    assert.equal(ready.posters, rows.length);
    assert.match(String(ready.model_version), /^base-[0-9a-f]{12}$/);
  });

  it('returns the k most similar posters, nearest first, with metadata and image URLs', async () => {
    const { status, body, headers } = await upload(`${server.url}/posters/similar?k=8`, readFileSync(posterPath(outsider.id)));
    assert.equal(status, 200);
    assert.equal(body.k, 8);
    // Where the time went: each part of the request, in milliseconds.
    const timing = Object.fromEntries((headers.get('server-timing') ?? '').split(', ').map((part) => part.split(';dur=')));
    assert.deepEqual(Object.keys(timing), ['read', 'preprocess', 'embed', 'search']);
    for (const ms of Object.values(timing)) assert.ok(Number(ms) >= 0 && Number(ms) < 10_000, `server-timing ${headers.get('server-timing')}`);
    assert.ok(Number(timing.embed) > 0 && Number(timing.preprocess) > 0);
    assert.equal(body.catalog_match, null);
    assert.equal(body.results.length, 8);
    for (let i = 0; i < body.results.length; i++) {
      const hit = body.results[i];
      assert.ok(catalogIds.has(hit.id));
      assert.ok(Math.abs(hit.similarity - (1 - hit.distance ** 2 / 2)) < 1e-5);
      if (i > 0) assert.ok(hit.distance >= body.results[i - 1].distance - 1e-6, 'sorted by distance');
      const row = rows.find((r) => r.id === hit.id)!;
      assert.deepEqual(hit.genres, row.genres.split('|'));
      assert.equal(hit.single_genre, row.single_genre);
      assert.equal(hit.split, row.split);
      assert.equal(hit.image_url, `${server.url}/posters/${hit.id}/image`);
    }
    const image = await fetch(body.results[0].image_url);
    assert.equal(image.status, 200);
    assert.equal(image.headers.get('content-type'), 'image/jpeg');
    assert.deepEqual(Buffer.from(await image.arrayBuffer()), readFileSync(posterPath(body.results[0].id)));
    assert.equal((await fetch(body.results[0].image_url, { headers: { 'if-none-match': image.headers.get('etag')! } })).status, 304);
  });

  it('defaults to k=8 and recognises a catalog poster by its pixels, even re-encoded as PNG', async () => {
    const member = rows[5]!;
    const png = await sharp(readFileSync(posterPath(member.id))).png().toBuffer();
    const { status, body } = await upload(`${server.url}/posters/similar`, png, { filename: 'x.png', type: 'image/png' });
    assert.equal(status, 200);
    assert.equal(body.results.length, 8);
    assert.equal(body.catalog_match?.id, member.id);
    assert.equal(body.results[0].id, member.id);
    assert.ok(body.results[0].distance < 1e-3);
  });

  it('filters by genre and year and still returns exactly k when k posters match', async () => {
    const counts = genreCounts(rows);
    const [rare] = [...counts.entries()].filter(([, n]) => n >= 2 && n <= 6).sort((a, b) => a[1] - b[1])[0]!;
    const bytes = readFileSync(posterPath(outsider.id));
    const some = await upload(`${server.url}/posters/similar?k=2&genre=${encodeURIComponent(rare)}`, bytes);
    assert.equal(some.body.results.length, 2);
    const all = await upload(`${server.url}/posters/similar?k=50&genre=${encodeURIComponent(rare)}`, bytes);
    assert.equal(all.body.results.length, counts.get(rare), `every ${rare} poster, no more`);
    assert.ok(all.body.results.every((r: { genres: string[] }) => r.genres.includes(rare)));

    // The earliest year from which at most k=100 posters are dated (whatever share of the catalog has a year).
    const datedFrom = (from: number) => rows.filter((r) => r.year && Number(r.year) >= from).length;
    const years = [...new Set(rows.filter((r) => r.year).map((r) => Number(r.year)))].sort((a, b) => a - b);
    const from = years.find((y) => datedFrom(y) <= 100)!;
    const expected = datedFrom(from);
    assert.ok(expected > 10, `a year range the sample fills (${expected} posters from ${from})`);
    const dated = await upload(`${server.url}/posters/similar?k=100&year_from=${from}`, bytes);
    assert.equal(dated.body.results.length, expected);
    assert.ok(dated.body.results.every((r: { year: number }) => r.year >= from));
    const none = await upload(`${server.url}/posters/similar?k=5&genre=NoSuchGenre`, bytes);
    assert.deepEqual([none.status, none.body.results], [200, []]);
  });

  it('votes genres with scores that sum to 1, and never lets a catalog poster vote for itself', async () => {
    const member = rows[7]!;
    const { status, body } = await upload(`${server.url}/posters/genre?k=5`, readFileSync(posterPath(member.id)));
    assert.equal(status, 200);
    assert.equal(body.catalog_match.id, member.id);
    assert.equal(body.neighbors.length, 5);
    assert.ok(body.neighbors.every((n: { id: string }) => n.id !== member.id));
    const total = body.scores.reduce((sum: number, s: { score: number }) => sum + s.score, 0);
    assert.ok(Math.abs(total - 1) < 1e-9);
    assert.equal(body.scores.length, genreCounts(rows).size, 'a score for every catalog genre');
    assert.equal(body.prediction.genre, body.scores[0].genre);
    assert.ok(body.majority.votes >= 1 && body.majority.votes <= 5);
    assert.ok(body.neighbors.some((n: { single_genre: string }) => n.single_genre === body.majority.genre));
    // the test model has no genre head: the vote answers, and asking for the classifier is a client error
    assert.deepEqual([body.method, body.probabilities], ['vote', null]);
    const noHead = await upload(`${server.url}/posters/genre?method=classifier`, readFileSync(posterPath(outsider.id)));
    assert.deepEqual([noHead.status, noHead.body.error.code], [400, 'no_genre_head']);
    const fallback = await upload(`${server.url}/posters/genre`, readFileSync(posterPath(outsider.id)));
    assert.equal(fallback.body.k, 5);
    assert.equal(fallback.body.neighbors.length, 5);
  });

  it('gets, browses and pages through the catalog', async () => {
    const one = (await (await fetch(`${server.url}/posters/${rows[0]!.id}`)).json()) as Record<string, unknown>;
    assert.equal(one.id, rows[0]!.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (await (await fetch(`${server.url}/posters?limit=33${cursor ? `&cursor=${cursor}` : ''}`)).json()) as {
        posters: { id: string }[];
        next_cursor: string | null;
      };
      assert.ok(page.posters.length <= 33);
      seen.push(...page.posters.map((p) => p.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, [...catalogIds].sort());
    const drama = (await (await fetch(`${server.url}/posters?genre=Drama&limit=500`)).json()) as { posters: { genres: string[] }[] };
    assert.equal(drama.posters.length, genreCounts(rows).get('Drama'));
  });

  it('exposes Prometheus metrics by route, for embedding batches, the catalog and the model', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /marquee_http_requests_total\{route="\/posters\/similar",method="POST",status="200"\} \d+/);
    assert.match(text, /marquee_http_request_duration_seconds_bucket\{le="[^"]+",route="\/posters\/genre",method="POST"\}/);
    assert.match(text, /marquee_embedding_batch_size_count [1-9]/);
    assert.match(text, /marquee_embedding_batch_duration_seconds_sum /);
    assert.match(text, new RegExp(`marquee_catalog_posters ${rows.length}`));
    assert.match(text, /marquee_active_model_info\{version="base-[0-9a-f]{12}"\} 1/);
  });

  it('serves Swagger UI and the committed OpenAPI document', async () => {
    const docs = await fetch(`${server.url}/docs`);
    assert.equal(docs.status, 200);
    assert.match(await docs.text(), /swagger/i);
    const served = await (await fetch(`${server.url}/docs/json`)).json();
    const committed = JSON.parse(readFileSync(join(ROOT, 'openapi', 'openapi.json'), 'utf8'));
    assert.deepEqual(served, committed, 'openapi/openapi.json is stale: run `npm run openapi`');
  });
});
