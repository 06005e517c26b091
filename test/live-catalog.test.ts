import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { checkRestart } from './support/crash.js';
import { testModelDir } from './support/model.js';
import { adminRequest, startServer, upload, type RunningServer } from './support/server.js';

const TOKEN = 'live-token';
const rows = subsetRows({ train: 50, val: 10, test: 10 });
const taken = new Set(rows.map((r) => r.id));
const outsiders = sharedRows().filter((r) => r.split === 'test' && !taken.has(r.id)).slice(0, 60);
const image = (id: string) => readFileSync(posterPath(id));

async function addPoster(server: RunningServer, bytes: Buffer, fields: Record<string, string | string[]>, token = TOKEN) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) for (const v of [value].flat()) form.append(name, v);
  form.append('image', new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), 'poster.jpg');
  const response = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
}


const admin = (server: RunningServer, method: string, path: string, body?: unknown) => adminRequest(server.url, TOKEN, method, path, body);

async function similar(server: RunningServer, bytes: Buffer, query = 'k=5') {
  const answer = await upload(`${server.url}/posters/similar?${query}`, bytes);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body as { model_version: string; catalog_match: { id: string } | null; results: { id: string; genres: string[] }[] };
}

describe('the live catalog', () => {
  let server: RunningServer;
  let env: Record<string, string>;
  before(async () => {
    env = { MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
    server = await startServer(env);
    env.MARQUEE_DATA_DIR = server.dataDir;
  });
  after(async () => {
    await server.stop();
  });

  it('adds a poster that the very next search finds as itself, and refuses a taken id unless upserting', async (t) => {
    const poster = outsiders[0]!;
    const started = performance.now();
    const added = await addPoster(server, image(poster.id), { id: poster.id, title: 'Added', year: '1999', genres: ['Horror', 'Mystery'] });
    t.diagnostic(`add answered in ${(performance.now() - started).toFixed(0)} ms (forward pass included)`);
    assert.equal(added.status, 201, JSON.stringify(added.body));
    assert.equal(added.headers.get('location'), `/posters/${poster.id}`);
    assert.deepEqual([added.body.genres, added.body.single_genre, added.body.year], [['Horror', 'Mystery'], 'Horror', 1999]);
    assert.equal(added.headers.get('marquee-change'), null, 'one server writes SQLite: no change to wait for');
    const waited = await upload(`${server.url}/posters/similar?k=1`, image(poster.id), { headers: { 'marquee-min-change': '123456789' } });
    assert.equal(waited.status, 200, 'a change id is already applied where one server writes');
    const found = await similar(server, image(poster.id));
    assert.equal(found.catalog_match?.id, poster.id);
    assert.equal(found.results[0]!.id, poster.id);
    assert.equal((await fetch(`${server.url}/posters/${poster.id}`)).status, 200);
    assert.equal((await fetch(`${server.url}/posters/${poster.id}/image`)).status, 200);

    const again = await addPoster(server, image(poster.id), { id: poster.id, genres: 'Drama' });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'poster_exists');
    const upserted = await addPoster(server, image(poster.id), { id: poster.id, genres: 'Drama|Horror', upsert: 'true' });
    assert.equal(upserted.status, 200, JSON.stringify(upserted.body));
    assert.deepEqual(upserted.body.genres, ['Drama', 'Horror']);

    const unnamed = await addPoster(server, image(outsiders[1]!.id), { genres: 'Comedy' });
    assert.equal(unnamed.status, 201);
    assert.match(unnamed.body.id, /^p-[0-9a-f]{12}$/);
  });

  it('answers bad adds in the one error shape, storing nothing', async () => {
    const bytes = image(outsiders[2]!.id);
    const cases: [Record<string, string | string[]>, Buffer | null, number, string, string?][] = [
      [{ id: 'x1' }, bytes, 400, 'invalid_request'],
      [{ id: 'x2', genres: 'Drama', year: 'soon' }, bytes, 400, 'invalid_request'],
      [{ id: 'bad id!', genres: 'Drama' }, bytes, 400, 'invalid_request'],
      [{ id: 'x3', genres: 'Drama', single_genre: 'Comedy' }, bytes, 400, 'invalid_request'],
      [{ id: 'x4', genres: 'Drama', split: 'holdout' }, bytes, 400, 'invalid_request'],
      [{ id: 'x8', genres: Array.from({ length: 33 }, (_, i) => `g${i}`).join('|') }, bytes, 400, 'invalid_request'],
      [{ id: 'x9', genres: `Drama|${'x'.repeat(65)}` }, bytes, 400, 'invalid_request'],
      [{ id: 'x5', genres: 'Drama' }, bytes.subarray(0, 600), 422, 'corrupt_image'],
      [{ id: 'x6', genres: 'Drama' }, Buffer.from('not an image'), 415, 'unsupported_image'],
      [{ id: 'x7', genres: 'Drama' }, bytes, 401, 'unauthorized', 'wrong-token'],
    ];
    for (const [fields, data, status, code, token] of cases) {
      const answer = await addPoster(server, data!, fields, token);
      assert.equal(answer.status, status, `${JSON.stringify(fields)}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.code, code);
      assert.equal((await fetch(`${server.url}/posters/${String(fields.id)}`)).status, 404);
    }
  });

  it('adds a batch: each poster as the single add would, one failure not stopping the others', async () => {
    const items = outsiders.slice(4, 8).map((r) => ({ id: r.id, genres: r.genres.split('|'), image: image(r.id).toString('base64') }));
    items.push({ id: 'batch-broken', genres: ['Drama'], image: Buffer.from('not an image').toString('base64') });
    items.push({ id: outsiders[0]!.id, genres: ['Drama'], image: image(outsiders[0]!.id).toString('base64') }); // taken above
    const answer = await admin(server, 'POST', '/admin/posters/batch', { posters: items });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.results.map((r: { index: number; status: number }) => [r.index, r.status]), [[0, 201], [1, 201], [2, 201], [3, 201], [4, 415], [5, 409]]);
    assert.equal(answer.body.results[5].error.code, 'poster_exists');
    for (const item of items.slice(0, 4)) assert.equal((await similar(server, image(item.id))).results[0]!.id, item.id);
    assert.equal((await fetch(`${server.url}/posters/batch-broken`)).status, 404);
    const piped = await admin(server, 'POST', '/admin/posters/batch', { posters: [{ ...items[0]!, id: 'batch-piped', genres: ['Drama|Comedy|Horror'] }] });
    assert.equal(piped.status, 400, 'a genre holding the separator is refused, not split into several');
    assert.equal(piped.body.error.code, 'invalid_request');
    const tooMany = await admin(server, 'POST', '/admin/posters/batch', { posters: Array.from({ length: 33 }, () => items[0]) });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.error.code, 'invalid_request');
  });

  it('changes metadata and pictures: the vote and filters use them from the next request', async () => {
    const poster = rows[5]!;
    const patched = await admin(server, 'PATCH', `/admin/posters/${poster.id}`, { genres: ['Noir-X', 'Drama'], title: 'Renamed' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal(patched.body.single_genre, 'Noir-X');
    // A near copy (not the same pixels, so not a catalog match) has the poster as its nearest voter.
    const nearCopy = await sharp(image(poster.id)).resize({ width: 150 }).jpeg({ quality: 80 }).toBuffer();
    const vote = await upload(`${server.url}/posters/genre?k=3`, nearCopy);
    assert.equal(vote.body.neighbors[0].id, poster.id);
    assert.ok(vote.body.scores.find((s: { genre: string; score: number }) => s.genre === 'Noir-X')?.score > 0);
    const filtered = await similar(server, nearCopy, 'k=3&genre=Noir-X');
    assert.deepEqual(filtered.results.map((r) => r.id), [poster.id]);
    assert.equal((await admin(server, 'PATCH', `/admin/posters/${poster.id}`, { genres: [] })).status, 400);
    assert.equal((await admin(server, 'PATCH', '/admin/posters/nobody', { title: 'x' })).status, 404);

    const map = await (await fetch(`${server.url}/posters/map`)).json();
    assert.equal(map.points.find((p: { id: string }) => p.id === poster.id).single_genre, 'Noir-X', 'the map labels points with the new genres');

    const replacement = image(outsiders[3]!.id);
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(replacement)], { type: 'image/jpeg' }), 'new.jpg');
    const put = await fetch(`${server.url}/admin/posters/${poster.id}/image`, { method: 'PUT', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(put.status, 200);
    assert.equal((await similar(server, replacement)).catalog_match?.id, poster.id);
    assert.notEqual((await similar(server, image(poster.id))).catalog_match?.id, poster.id, 'the old picture is no longer it');
    const redrawn = await (await fetch(`${server.url}/posters/map`)).json();
    assert.notEqual(redrawn.catalog_fingerprint, map.catalog_fingerprint, 'a new picture is a new catalog state, and a new map');
    assert.equal((await admin(server, 'PATCH', `/admin/posters/${poster.id}`, { genres: ['Noir-Y'] })).status, 200);
    const relabelled = await (await fetch(`${server.url}/posters/map`)).json();
    assert.equal(relabelled.points.find((p: { id: string }) => p.id === poster.id).single_genre, 'Noir-Y', 'a map asked for again is not an old one');
  });

  it('deletes a poster from search, browse, votes and matches at once; a restart keeps it deleted and agrees with SQLite', async () => {
    const seed = rows[8]!;
    const bytes = image(seed.id);
    assert.equal((await similar(server, bytes)).catalog_match?.id, seed.id);
    const key = (await fetch(`${server.url}/posters/${seed.id}`)).status;
    assert.equal(key, 200);
    assert.equal((await admin(server, 'DELETE', `/admin/posters/${seed.id}`)).status, 204);
    const after = await similar(server, bytes, 'k=20');
    assert.equal(after.catalog_match, null);
    assert.ok(!after.results.some((r) => r.id === seed.id));
    assert.equal((await fetch(`${server.url}/posters/${seed.id}`)).status, 404);
    assert.equal((await admin(server, 'DELETE', `/admin/posters/${seed.id}`)).status, 404);
    const db = new Database(join(server.dataDir, 'marquee.db'), { readonly: true });
    assert.equal(db.prepare('SELECT count(*) AS n FROM posters WHERE id = ?').get(seed.id) && (db.prepare('SELECT count(*) AS n FROM posters WHERE id = ?').get(seed.id) as { n: number }).n, 0);
    db.close();
    assert.ok(!existsSync(join(server.dataDir, 'images', `${seed.id}.jpg`)), 'its image is removed');

    // The seed import at start-up brings back neither the deleted poster nor the old metadata.
    await server.stop();
    server = await startServer(env);
    assert.equal((await fetch(`${server.url}/posters/${seed.id}`)).status, 404);
    assert.equal((await (await fetch(`${server.url}/posters/${rows[5]!.id}`)).json()).title, 'Renamed');
    assert.deepEqual(await checkRestart(server, { jobs: [], activated: null }), []);
  });

  it('16 clients adding and deleting beside a querying client: nothing lost, no stale hit, SQLite and the index agree', async () => {
    const pool = outsiders.slice(10, 58);
    let querying = true;
    const failed: number[] = [];
    const reader = (async () => {
      while (querying) {
        const answer = await upload(`${server.url}/posters/similar?k=5`, image(rows[1]!.id));
        if (answer.status !== 200) failed.push(answer.status);
      }
    })();
    const kept: string[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async (_, client) => {
        for (const [i, poster] of pool.filter((_, n) => n % 16 === client).entries()) {
          const added = await addPoster(server, image(poster.id), { id: poster.id, genres: poster.genres });
          assert.equal(added.status, 201, JSON.stringify(added.body));
          if (i % 2 === 1) {
            assert.equal((await admin(server, 'DELETE', `/admin/posters/${poster.id}`)).status, 204);
            // No stale hit once the delete has answered.
            const answer = await similar(server, image(poster.id), 'k=10');
            assert.ok(answer.catalog_match === null && !answer.results.some((r) => r.id === poster.id), `${poster.id} still found`);
          } else {
            kept.push(poster.id);
          }
        }
      }),
    );
    querying = false;
    await reader;
    assert.deepEqual(failed, []);
    for (const id of kept) assert.equal((await similar(server, image(id), 'k=1')).results[0]!.id, id);
    await server.stop();
    server = await startServer(env);
    assert.deepEqual(await checkRestart(server, { jobs: [], activated: null }), []);
    for (const id of kept) assert.equal((await fetch(`${server.url}/posters/${id}`)).status, 200);
  });

  it('a retrain while posters are added and removed swaps in a model that has exactly the catalog at the swap', async () => {
    const job = await admin(server, 'POST', '/admin/retrain', { mode: 'head', epochs: 1, force: true });
    assert.equal(job.status, 202);
    const added = outsiders[58]!;
    const removed = rows[20]!;
    // Both writes land while the job trains: after it embedded... nothing of them yet.
    for (;;) {
      const state = (await admin(server, 'GET', `/admin/jobs/${job.body.id}`)).body.state;
      if (state === 'training') break;
      assert.ok(!['failed', 'succeeded', 'rejected'].includes(state), state);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal((await addPoster(server, image(added.id), { id: added.id, genres: added.genres })).status, 201);
    assert.equal((await admin(server, 'DELETE', `/admin/posters/${removed.id}`)).status, 204);
    let done;
    for (;;) {
      done = (await admin(server, 'GET', `/admin/jobs/${job.body.id}`)).body;
      if (['failed', 'succeeded', 'rejected', 'cancelled'].includes(done.state)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.equal(done.state, 'succeeded', done.error);
    const found = await similar(server, image(added.id));
    assert.equal(found.model_version, done.model_version);
    assert.equal(found.catalog_match?.id, added.id);
    assert.equal(found.results[0]!.id, added.id);
    const gone = await similar(server, image(removed.id), 'k=20');
    assert.ok(!gone.results.some((r) => r.id === removed.id));
    await server.stop();
    server = await startServer(env);
    assert.deepEqual(await checkRestart(server, { jobs: [job.body.id], activated: done.model_version }), []);
  });
});
