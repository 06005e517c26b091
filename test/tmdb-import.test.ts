import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stateOf } from './support/backend.js';
import { posterPath, sharedRows } from './support/catalog.js';
import { marqueeAsync } from './support/cli.js';
import { testModelDir } from './support/model.js';
import { startServer, upload } from './support/server.js';

const TOKEN = 'tmdb-token';
const PER_PAGE = 5;
const rows = sharedRows().filter((r) => r.split === 'train').slice(200, 215);
const names = [...new Set(rows.flatMap((r) => r.genres.split('|')))];
const genreId = (name: string) => 100 + names.indexOf(name);
// Movies in TMDB's documented shape; genre ids deliberately not alphabetical (TMDB's order is kept).
const movies = rows.map((row, i) => ({
  adult: false,
  genre_ids: row.genres.split('|').map(genreId).reverse(),
  id: 5000 + i,
  original_language: i % 2 ? 'fr' : 'en',
  original_title: row.title || row.id,
  overview: '',
  popularity: 100 - i,
  poster_path: i === 2 ? null : `/poster-${i}.jpg`,
  release_date: row.year ? `${row.year}-06-01` : '',
  title: row.title || row.id,
  video: false,
  vote_average: 7,
  vote_count: 10,
}));

/** A stand-in for api.themoviedb.org/3 and image.tmdb.org/t/p, on 127.0.0.1. */
function standIn(): { server: Server; requests: string[]; url: () => string } {
  const requests: string[] = [];
  let limited = false;
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push(`${url.pathname}${url.searchParams.has('page') ? `?page=${url.searchParams.get('page')}` : ''}`);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', ...headers }).end(JSON.stringify(body));
    };
    const image = /^\/t\/p\/w342\/poster-(\d+)\.jpg$/.exec(url.pathname);
    if (image) {
      const i = Number(image[1]);
      if (i === 6) return json(404, { status_code: 34, status_message: 'The resource you requested could not be found.' });
      return res.writeHead(200, { 'content-type': 'image/jpeg' }).end(readFileSync(posterPath(rows[i]!.id)));
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return json(401, { status_code: 7, status_message: 'Invalid API key: You must be granted a valid key.', success: false });
    }
    if (url.pathname === '/3/genre/movie/list') return json(200, { genres: names.map((name) => ({ id: genreId(name), name })) });
    if (url.pathname === '/3/movie/popular') {
      const page = Number(url.searchParams.get('page') ?? 1);
      if (page === 2 && !limited) {
        limited = true;
        return json(429, { status_code: 25, status_message: 'Your request count (41) is over the allowed limit of (40).' }, { 'retry-after': '1' });
      }
      const total = Math.ceil(movies.length / PER_PAGE);
      return json(200, { page, results: movies.slice((page - 1) * PER_PAGE, page * PER_PAGE), total_pages: total, total_results: movies.length });
    }
    return json(404, { status_code: 34, status_message: 'The resource you requested could not be found.' });
  });
  return { server, requests, url: () => `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

describe('marquee import-tmdb against a stand-in for TMDB', () => {
  const tmdb = standIn();
  let env: Record<string, string>;
  before(async () => {
    await new Promise<void>((resolve) => tmdb.server.listen(0, '127.0.0.1', resolve));
    env = {
      MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')),
      MARQUEE_TMDB_API_URL: `${tmdb.url()}/3`,
      MARQUEE_TMDB_IMAGE_URL: `${tmdb.url()}/t/p`,
      TMDB_BEARER_TOKEN: TOKEN,
    };
  });
  after(() => tmdb.server.close());

  it('says what is missing when TMDB cannot be used', async () => {
    const none = await marqueeAsync(['import-tmdb'], { ...env, TMDB_BEARER_TOKEN: '' });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /set TMDB_API_KEY .* or TMDB_BEARER_TOKEN/);
    const wrong = await marqueeAsync(['import-tmdb'], { ...env, TMDB_BEARER_TOKEN: 'nope' });
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /TMDB refused the credentials \(401\)/);
    assert.equal((await marqueeAsync(['import-tmdb', '--pages', 'many'], env)).code, 2);
  });

  it('imports pages of popular movies with their posters, waits out a 429, reports each failure, and resumes where it stopped', async () => {
    const first = await marqueeAsync(['import-tmdb', '--pages', '2'], env);
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout.trim().split('\n').pop()!);
    assert.deepEqual({ ...report, next_page: report.next_page }, { list: 'movie/popular', pages: [1, 2], movies: 10, added: 8, skipped: 0, failed: 2, next_page: 3 });
    assert.match(first.stderr, /tmdb 5002 .*: no poster/);
    assert.match(first.stderr, /tmdb 5006 .*: poster \/t\/p\/w342\/poster-6\.jpg answered HTTP 404/);
    assert.deepEqual(tmdb.requests.filter((r) => r.includes('popular')), ['/3/movie/popular?page=1', '/3/movie/popular?page=2', '/3/movie/popular?page=2']);

    tmdb.requests.length = 0;
    const second = await marqueeAsync(['import-tmdb', '--pages', '5'], env);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(JSON.parse(second.stdout.trim().split('\n').pop()!), { list: 'movie/popular', pages: [3], movies: 5, added: 5, skipped: 0, failed: 0, next_page: null });
    assert.deepEqual(tmdb.requests.filter((r) => r.includes('popular')), ['/3/movie/popular?page=3'], 'pages read before are not read again');

    const again = await marqueeAsync(['import-tmdb', '--restart'], env);
    assert.deepEqual(JSON.parse(again.stdout.trim().split('\n').pop()!).skipped, 4, 'what it has is skipped');

    const state = await stateOf(env);
    const stored = (await state.catalog.get('tmdb-5001'))!;
    await state.close();
    const movie = movies[1]!;
    assert.deepEqual(stored.genres, movie.genre_ids.map((id) => names[id - 100]));
    assert.equal(stored.singleGenre, names[movie.genre_ids[0]! - 100]);
    assert.equal(stored.title, movie.title);
    assert.equal(stored.releaseDate, movie.release_date || null);
    assert.deepEqual(stored.source, { tmdb_id: 5001, popularity: 99, original_language: 'fr' });

    // The imported catalog serves.
    const server = await startServer({ ...env, MARQUEE_CATALOG: '', MARQUEE_BASE_MODEL: testModelDir() });
    try {
      const ready = await (await fetch(`${server.url}/ready`)).json();
      assert.equal(ready.posters, 13);
      const answer = await upload(`${server.url}/posters/similar?k=3`, readFileSync(posterPath(rows[4]!.id)));
      assert.equal(answer.body.catalog_match.id, 'tmdb-5004');
    } finally {
      await server.stop();
    }
  });
});

describe('marquee import-tmdb treats what TMDB sends as untrusted', () => {
  const LIMIT = 200_000;
  const good = rows[0]!;
  const sent = new Map<string, number>();
  // One page of hostile movies: ids that would name files elsewhere, a poster path out of the image
  // folder, and posters larger than the download limit (declared, or streamed without end).
  const hostile = [
    { id: '../../../escaped', poster_path: '/good.jpg' },
    { id: -7, poster_path: '/good.jpg' },
    { id: 1.5, poster_path: '/good.jpg' },
    { id: 2 ** 60, poster_path: '/good.jpg' },
    { id: '9001', poster_path: '/good.jpg' },
    { id: 9002, poster_path: '/../../secret.jpg' },
    { id: 9003, poster_path: '/declared-huge.jpg' },
    { id: 9004, poster_path: '/endless.jpg' },
    { id: 9005, poster_path: '/good.jpg' },
  ].map((movie) => ({ ...movie, title: `Movie ${movie.id}`, genre_ids: [genreId(good.genres.split('|')[0]!)], release_date: '1999-01-01' }));
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (url.pathname === '/3/genre/movie/list') return json({ genres: names.map((name) => ({ id: genreId(name), name })) });
    if (url.pathname === '/3/movie/popular') return json({ page: 1, results: hostile, total_pages: 1, total_results: hostile.length });
    if (url.pathname === '/t/p/w342/good.jpg') return res.writeHead(200, { 'content-type': 'image/jpeg' }).end(readFileSync(posterPath(good.id)));
    if (url.pathname === '/t/p/w342/declared-huge.jpg') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(10 * LIMIT) });
      res.write(readFileSync(posterPath(good.id)));
      return;
    }
    if (url.pathname === '/t/p/w342/endless.jpg') {
      // Streamed until the client goes away (at most 64 MB), counting what was written.
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      let written = 0;
      const chunk = Buffer.alloc(64 * 1024, 0xab);
      const pump = () => {
        while (written < 64 * 2 ** 20 && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => sent.set('endless', written));
      return pump();
    }
    res.writeHead(404).end();
  });
  let dataDir: string;
  let env: Record<string, string>;
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    dataDir = join(mkdtempSync(join(tmpdir(), 'marquee-tmdb-')), 'data');
    env = { MARQUEE_DATA_DIR: dataDir, MARQUEE_TMDB_API_URL: `${base}/3`, MARQUEE_TMDB_IMAGE_URL: `${base}/t/p`, TMDB_BEARER_TOKEN: TOKEN, MARQUEE_MAX_UPLOAD_BYTES: String(LIMIT) };
  });
  after(() => server.close());

  it('imports only a movie whose id is a safe positive integer, from a poster path on the image host, within the size limit', async () => {
    const run = await marqueeAsync(['import-tmdb'], env);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout.trim().split('\n').pop()!);
    assert.equal(report.added, 1, run.stderr);
    assert.equal(report.failed, hostile.length - 1, run.stderr);
    assert.match(run.stderr, /: id "..\/..\/..\/escaped" is not a positive integer/);
    assert.match(run.stderr, /: id -7 is not a positive integer/);
    assert.match(run.stderr, /: id 1.5 is not a positive integer/);
    assert.match(run.stderr, /: id 1152921504606847000 is not a positive integer/);
    assert.match(run.stderr, /: id "9001" is not a positive integer/);
    assert.match(run.stderr, /tmdb 9002 .*: poster path "\/..\/..\/secret.jpg" is not a file name/);
    assert.match(run.stderr, /tmdb 9003 .*: poster \/t\/p\/w342\/declared-huge.jpg is larger than 200000 bytes \(Content-Length 2000000\)/);
    assert.match(run.stderr, /tmdb 9004 .*: poster \/t\/p\/w342\/endless.jpg is larger than 200000 bytes \(cut off after \d+ bytes\)/);
    // The endless poster's stream was dropped near the limit (the sockets' buffers hold a few MB at most).
    for (let i = 0; i < 100 && !sent.has('endless'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok((sent.get('endless') ?? Infinity) < 16 * 2 ** 20, `the stand-in wrote ${sent.get('endless')} bytes`);

    const state = await stateOf(env);
    const stored = await state.catalog.all();
    await state.close();
    assert.deepEqual(stored.map((p) => ({ id: p.id, imagePath: p.imagePath })), [{ id: 'tmdb-9005', imagePath: 'images/tmdb-9005.jpg' }]);
    // Nothing was written beside the data dir.
    assert.deepEqual(readdirSync(dirname(dataDir)), ['data']);
  });
});
