import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
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

    const db = new Database(join(env.MARQUEE_DATA_DIR!, 'marquee.db'), { readonly: true });
    const stored = db.prepare(`SELECT * FROM posters WHERE id = 'tmdb-5001'`).get() as Record<string, string>;
    db.close();
    const movie = movies[1]!;
    assert.deepEqual(JSON.parse(stored.genres!), movie.genre_ids.map((id) => names[id - 100]));
    assert.equal(stored.single_genre, names[movie.genre_ids[0]! - 100]);
    assert.equal(stored.title, movie.title);
    assert.equal(stored.release_date, movie.release_date || null);
    assert.deepEqual(JSON.parse(stored.source!), { tmdb_id: 5001, popularity: 99, original_language: 'fr' });

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
