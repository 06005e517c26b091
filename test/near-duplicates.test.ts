import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { ApiError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { NearDuplicates } from '../src/service/near-duplicates.js';
import { openPool } from '../src/state/postgres/db.js';
import { stateOf, withDatabase } from './support/backend.js';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { ROOT } from './support/paths.js';
import { adminRequest, nearDuplicatesReady, startServer, upload, type RunningServer } from './support/server.js';

// The served default model (what `npm start` serves offline) and real posters, re-encoded,
// recoloured and framed here. The near-duplicate rule is the perceptual hash's alone.
const TOKEN = 'duplicates-token';
/** The catalog's own near-duplicates: MGM's placeholder under two titles (bench/results/near-duplicates.md). */
const PLACEHOLDERS = ['tt0095275', 'tt0100100'];
const rows = [...subsetRows({ train: 40, val: 5, test: 5 }), ...sharedRows().filter((r) => PLACEHOLDERS.includes(r.id))];
const taken = new Set(rows.map((r) => r.id));
const outsiders = sharedRows().filter((r) => r.split === 'test' && !taken.has(r.id));
const image = (id: string) => readFileSync(posterPath(id));
const source = rows[3]!;

const jpegQ30 = (id: string) => sharp(image(id)).jpeg({ quality: 30 }).toBuffer();
const framed = (id: string) => sharp(image(id)).extend({ top: 10, bottom: 10, left: 10, right: 10, background: '#000' }).webp({ quality: 75 }).toBuffer();
const recoloured = (id: string) => sharp(image(id)).modulate({ hue: 20, brightness: 1.1 }).png().toBuffer();

async function addPoster(server: RunningServer, bytes: Buffer, fields: Record<string, string>) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append('image', new Blob([new Uint8Array(bytes)]), 'poster');
  const response = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
}

interface Groups {
  total_groups: number;
  groups: { posters: { id: string }[]; pairs: { a: string; b: string; distance: number }[] }[];
}
const groupOf = (groups: Groups, id: string) => groups.groups.find((g) => g.posters.some((p) => p.id === id));

describe('near-duplicates', () => {
  let server: RunningServer;
  let env: Record<string, string>;
  const admin = (method: string, path: string, body?: unknown) => adminRequest(server.url, TOKEN, method, path, body);
  before(async () => {
    env = {
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_WEIGHTS: 'none',
      MARQUEE_DEFAULT_MODEL: join(ROOT, 'models', 'default'),
      MARQUEE_PRECISION: 'auto',
      MARQUEE_ADMIN_TOKEN: TOKEN,
    };
    server = await startServer(env);
    env.MARQUEE_DATA_DIR = server.dataDir;
    await nearDuplicatesReady(server.url);
  });
  after(async () => {
    await server.stop();
  });

  it('rejects a re-encoded catalog poster naming it, and stores nothing', async () => {
    for (const [label, bytes] of [['JPEG q30', await jpegQ30(source.id)], ['framed WebP', await framed(source.id)]] as const) {
      const answer = await addPoster(server, bytes, { id: `copy-${label.length}`, genres: 'Drama', on_duplicate: 'reject' });
      assert.equal(answer.status, 409, `${label}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.code, 'near_duplicate');
      assert.match(answer.body.error.message, new RegExp(`poster ${source.id}\\b`));
      assert.equal(answer.headers.get('x-near-duplicate-of'), source.id);
      assert.equal((await fetch(`${server.url}/posters/copy-${label.length}`)).status, 404, 'nothing stored');
    }
  });

  it('adds a distinct poster under reject and flag, flagging nothing', async () => {
    const rejectable = await addPoster(server, image(outsiders[0]!.id), { id: outsiders[0]!.id, genres: 'Drama', on_duplicate: 'reject' });
    assert.equal(rejectable.status, 201, JSON.stringify(rejectable.body));
    assert.equal(rejectable.body.near_duplicates, undefined, 'only flag lists them');
    const flagged = await addPoster(server, image(outsiders[1]!.id), { id: outsiders[1]!.id, genres: 'Drama', on_duplicate: 'flag' });
    assert.equal(flagged.status, 201, JSON.stringify(flagged.body));
    assert.deepEqual(flagged.body.near_duplicates, []);
    assert.match(flagged.headers.get('server-timing') ?? '', /duplicates;dur=[\d.]+/);
  });

  it('flags a recoloured catalog poster, stores it, and the groups then hold the planted pair', async () => {
    const flagged = await addPoster(server, await recoloured(source.id), { id: 'planted', genres: 'Drama', on_duplicate: 'flag' });
    assert.equal(flagged.status, 201, JSON.stringify(flagged.body));
    assert.equal(flagged.body.near_duplicates[0]?.id, source.id, JSON.stringify(flagged.body.near_duplicates));
    assert.equal(flagged.body.id, 'planted');
    assert.equal((await fetch(`${server.url}/posters/planted`)).status, 200);

    const listed = await admin('GET', '/admin/duplicates');
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const group = groupOf(listed.body as Groups, 'planted');
    assert.deepEqual(group?.posters.map((p) => p.id).sort(), [source.id, 'planted'].sort(), JSON.stringify(listed.body));
    // The catalog's own duplicate is found too, and no distinct poster is grouped with either.
    assert.deepEqual(groupOf(listed.body as Groups, PLACEHOLDERS[0]!)?.posters.map((p) => p.id), PLACEHOLDERS);
    assert.equal((listed.body as Groups).total_groups, 2, JSON.stringify(listed.body));
    assert.equal((await admin('GET', '/admin/duplicates?limit=1')).body.groups.length, 1);
  });

  it('lists at most 100 pairs of a group, the closest, and counts them all', async () => {
    // 16 copies of one picture (the source, the planted recolouring, 14 re-adds) make 120 pairs.
    const copies = Array.from({ length: 14 }, (_, i) => `copy-${i}`);
    for (const id of copies) assert.equal((await addPoster(server, readFileSync(posterPath(source.id)), { id, genres: 'Drama' })).status, 201);
    try {
      const listed = await admin('GET', '/admin/duplicates');
      assert.equal(listed.status, 200, JSON.stringify(listed.body).slice(0, 500));
      const group = listed.body.groups.find((g: { posters: { id: string }[] }) => g.posters.some((p) => p.id === source.id));
      assert.equal(group.posters.length, 16);
      assert.equal(group.total_pairs, 120);
      assert.equal(group.pairs.length, 100);
      const distances = group.pairs.map((p: { distance: number }) => p.distance);
      assert.deepEqual(distances, [...distances].sort((x, y) => x - y), 'closest first');
    } finally {
      for (const id of copies) assert.equal((await admin('DELETE', `/admin/posters/${id}`)).status, 204);
    }
  });

  it('answers the public look-ups by upload and by id', async () => {
    const byUpload = await upload(`${server.url}/posters/near-duplicates`, await jpegQ30(source.id));
    assert.equal(byUpload.status, 200, JSON.stringify(byUpload.body));
    assert.deepEqual(byUpload.body.near_duplicates.map((d: { id: string }) => d.id).sort(), [source.id, 'planted'].sort());
    const exact = await upload(`${server.url}/posters/near-duplicates`, image(source.id));
    assert.deepEqual([exact.body.near_duplicates[0].id, exact.body.near_duplicates[0].distance], [source.id, 0]);

    const byId = await fetch(`${server.url}/posters/${source.id}/near-duplicates`);
    const body = (await byId.json()) as any;
    assert.equal(byId.status, 200, JSON.stringify(body));
    assert.deepEqual(body.near_duplicates.map((d: { id: string }) => d.id), ['planted']);
    const distinct = (await (await fetch(`${server.url}/posters/${outsiders[0]!.id}/near-duplicates`)).json()) as any;
    assert.deepEqual(distinct.near_duplicates, []);

    assert.equal((await fetch(`${server.url}/posters/nope/near-duplicates`)).status, 404);
    const empty = await fetch(`${server.url}/posters/near-duplicates`, { method: 'POST', body: new FormData() });
    assert.equal(empty.status, 400);
  });

  it('answers a bad on_duplicate, and checks each item of a batch', async () => {
    const bad = await addPoster(server, image(outsiders[2]!.id), { id: 'bad', genres: 'Drama', on_duplicate: 'maybe' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'invalid_request');
    const batch = await admin('POST', '/admin/posters/batch', {
      on_duplicate: 'reject',
      posters: [
        { id: 'batch-copy', genres: ['Drama'], image: (await jpegQ30(rows[5]!.id)).toString('base64') },
        { id: outsiders[3]!.id, genres: ['Drama'], image: image(outsiders[3]!.id).toString('base64') },
      ],
    });
    assert.equal(batch.status, 200, JSON.stringify(batch.body));
    assert.deepEqual(batch.body.results.map((r: { status: number }) => r.status), [409, 201]);
    assert.equal(batch.body.results[0].error.code, 'near_duplicate');
    assert.match(batch.body.results[0].error.message, new RegExp(rows[5]!.id));
    assert.equal((await admin('POST', '/admin/posters/batch', { on_duplicate: 'nope', posters: [] })).status, 400);
  });

  it('keeps the hashes across a restart, hashes again a data dir that lost them, and forgets a deleted poster', async () => {
    await server.stop();
    const state = await stateOf({ ...env, MARQUEE_DATA_DIR: server.dataDir });
    try {
      assert.ok((await state.catalog.count()) > 0);
      assert.deepEqual(await state.hashes.missing(), [], 'every poster, added ones too, has its hash stored');
    } finally {
      await state.close();
    }
    await forgetHashes({ ...env, MARQUEE_DATA_DIR: server.dataDir });
    server = await startServer(env);
    await nearDuplicatesReady(server.url);
    assert.match(server.logs(), /"hashed":\d+,"msg":"near-duplicate checks ready"/);
    assert.doesNotMatch(server.logs(), /"hashed":0,/, 'the posters were hashed again');
    const listed = (await admin('GET', '/admin/duplicates')).body as Groups;
    assert.ok(groupOf(listed, 'planted'), JSON.stringify(listed));

    assert.equal((await admin('DELETE', '/admin/posters/planted')).status, 204);
    const afterDelete = (await admin('GET', '/admin/duplicates')).body as Groups;
    assert.equal(groupOf(afterDelete, 'planted'), undefined);
    assert.equal(groupOf(afterDelete, source.id), undefined);
    assert.equal((await fetch(`${server.url}/admin/duplicates`)).status, 401);
  });
});

describe('near-duplicate listings while the catalog is being hashed', () => {
  it('a server stopped while it hashes the catalog ends the hashing, and says so, before its stores close: exit 0, no error logged', async () => {
    const many = subsetRows({ train: 240, val: 30, test: 30 });
    const server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(many), MARQUEE_BASE_WEIGHTS: 'none', MARQUEE_DEFAULT_MODEL: join(ROOT, 'models', 'default') });
    const hashing = await fetch(`${server.url}/posters/${many[0]!.id}/near-duplicates`);
    await hashing.body?.cancel();
    assert.equal(hashing.status, 503, 'stopped while hashing');
    assert.equal(await server.stop(), 0);
    assert.match(server.logs(), /"msg":"near-duplicate hashing stopped: the server is stopping"/);
    assert.doesNotMatch(server.logs(), /"level":50/);
  });

  it('answer 503 during the hashing and the groups once it ends (a listing refused meanwhile is not remembered)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'marquee-hashing-'));
    const imported = marquee(['import', makeCatalogDir(subsetRows({ train: 24, val: 4, test: 4 }))], { MARQUEE_DATA_DIR: dataDir });
    assert.equal(imported.code, 0, imported.stderr);
    const state = await stateOf({ MARQUEE_DATA_DIR: dataDir });
    try {
      const duplicates = new NearDuplicates({ catalog: state.catalog, hashes: state.hashes, dataDir, maxPixels: 40_000_000, log: createLogger('silent') });
      const filling = duplicates.fillMissing();
      await assert.rejects(duplicates.groups(), (error: ApiError) => error.statusCode === 503 && error.code === 'not_ready');
      assert.equal(await filling, 32, 'every imported poster hashed');
      assert.ok(Array.isArray(await duplicates.groups()));
    } finally {
      await state.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** The stored hashes dropped behind the server's back, as a data dir that lost them (no store forgets them all). */
async function forgetHashes(env: Record<string, string>): Promise<void> {
  const url = withDatabase(env).MARQUEE_DATABASE_URL;
  if (url) {
    const pool = await openPool(url);
    await pool.query('DELETE FROM poster_hashes');
    await pool.end();
  } else {
    const db = new Database(join(env.MARQUEE_DATA_DIR!, 'marquee.db'));
    db.prepare('DELETE FROM poster_hashes').run();
    db.close();
  }
}
