import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { decodeRgb } from '../model/preprocess.js';
import type { Catalog } from '../state/catalog.js';
import { writeAtomically } from '../state/files.js';
import { imageName, posterIdProblem } from './importer.js';

/**
 * `marquee import-tmdb`: the catalog the paper built, from TMDB's API v3. The genre list (ids to
 * names), then pages of `movie/popular` (or `discover/movie` with its filters); each movie's poster
 * is downloaded from the image base at the chosen size and imported as `tmdb-<id>` with its title,
 * release date, year, genres in TMDB's order, and TMDB's id, popularity and original language.
 * Rate limits are honoured (429 and Retry-After); the next page to read is kept in the data dir,
 * so a second run goes on where the first stopped; movies already imported are skipped.
 *
 * What TMDB sends is checked as a client's upload would be: a movie's id must make a poster id the
 * API would accept (it names a file), a poster path must be a file name on the image host, and no
 * answer is read past its size limit.
 */

export interface TmdbOptions {
  apiUrl: string;
  imageUrl: string;
  /** v3 API key (`api_key` parameter) or v4 read access token (Authorization: Bearer); one is needed. */
  apiKey: string | null;
  bearerToken: string | null;
  /** Poster size of the image base, e.g. w342, w500, original. */
  size: string;
  /** How many pages to read in this run (20 movies each). */
  pages: number;
  /** discover/movie filters (e.g. with_genres=27, primary_release_year=1984); none: movie/popular. */
  discover: Record<string, string>;
  /** Start again from page 1 instead of where the last run stopped. */
  restart: boolean;
  /** Longest wait for a Retry-After before giving up on the request. */
  maxRetryAfterSeconds?: number;
}

export interface TmdbReport {
  list: string;
  pages: number[];
  movies: number;
  added: number;
  skipped: number;
  failed: { tmdb_id: number | null; title: string | null; reason: string }[];
  next_page: number | null;
}

/** A movie as TMDB lists it: nothing here is trusted until importMovie has checked it. */
interface Movie {
  id: unknown;
  title?: unknown;
  release_date?: unknown;
  genre_ids?: unknown;
  poster_path?: unknown;
  popularity?: unknown;
  original_language?: unknown;
}

/** The most a JSON answer (a page of 20 movies is about 10 KB) may take. */
const MAX_JSON_BYTES = 4 * 2 ** 20;

/** A poster path as TMDB's image host names its files: "/kqjL17yufvn9OVLyXYpvtyrFfak.jpg". */
const POSTER_PATH = /^\/[A-Za-z0-9_-]+\.[A-Za-z0-9]{1,5}$/;

/** TMDB cannot be used as configured (credentials, a failing endpoint); the message says what to do. */
export class TmdbError extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One HTTP GET with the credentials, retrying 429 (after Retry-After) and 5xx (with back-off). */
async function get(url: URL, options: TmdbOptions, log: Logger, auth = true): Promise<Response> {
  if (auth && options.apiKey) url.searchParams.set('api_key', options.apiKey);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (auth && options.bearerToken) headers.authorization = `Bearer ${options.bearerToken}`;
  for (let attempt = 0; ; attempt++) {
    let response: Response;
    try {
      response = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
    } catch (error) {
      if (attempt >= 3) throw new TmdbError(`${url.host}${url.pathname}: ${(error as Error).message}`);
      await sleep(500 * 2 ** attempt);
      continue;
    }
    if (response.status === 429 && attempt < 8) {
      const seconds = Math.min(Number(response.headers.get('retry-after') ?? '1') || 1, options.maxRetryAfterSeconds ?? 60);
      log.info({ url: url.pathname, seconds }, 'TMDB rate limit: waiting as Retry-After asks');
      await response.arrayBuffer();
      await sleep(seconds * 1000);
      continue;
    }
    if (response.status >= 500 && attempt < 3) {
      await response.arrayBuffer();
      await sleep(500 * 2 ** attempt);
      continue;
    }
    return response;
  }
}

/**
 * A response's body, refused past `limit` bytes: by its Content-Length before anything is read,
 * else by cancelling the stream as soon as the count passes the limit (nothing more is buffered).
 */
export async function readCapped(response: Response, limit: number, what: string): Promise<Buffer> {
  const tooLarge = (size: string) => new Error(`${what} is larger than ${limit} bytes (${size})`);
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > limit) {
    await response.body?.cancel();
    throw tooLarge(`Content-Length ${declared}`);
  }
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks);
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw tooLarge(`cut off after ${size} bytes`);
    }
    chunks.push(value);
  }
}

async function getJson<T>(url: URL, options: TmdbOptions, log: Logger): Promise<T> {
  const response = await get(url, options, log);
  if (response.status === 401) throw new TmdbError('TMDB refused the credentials (401): check TMDB_API_KEY or TMDB_BEARER_TOKEN');
  let body: Buffer;
  try {
    body = await readCapped(response, MAX_JSON_BYTES, `${url.pathname}'s answer`);
  } catch (error) {
    throw new TmdbError((error as Error).message);
  }
  if (response.status !== 200) throw new TmdbError(`${url.pathname} answered HTTP ${response.status}: ${body.toString('utf8').slice(0, 200)}`);
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new TmdbError(`${url.pathname} answered with something other than JSON`);
  }
}

function endpoint(options: TmdbOptions, path: string): URL {
  return new URL(`${options.apiUrl.replace(/\/$/, '')}/${path}`);
}

export interface TmdbDeps {
  catalog: Catalog;
  dataDir: string;
  maxPixels: number;
  /** The largest poster download (MARQUEE_MAX_UPLOAD_BYTES: as large as an upload may be). */
  maxPosterBytes: number;
  log: Logger;
  onProgress?: (done: number, total: number) => void;
}

export async function importTmdb(options: TmdbOptions, deps: TmdbDeps): Promise<TmdbReport> {
  if (!options.apiKey && !options.bearerToken) throw new TmdbError('set TMDB_API_KEY (v3 key) or TMDB_BEARER_TOKEN (v4 read access token)');
  const { dataDir, log } = deps;
  const list = Object.keys(options.discover).length > 0 ? 'discover/movie' : 'movie/popular';
  // The resume point belongs to the list and its filters: other filters start from page 1.
  const listKey = createHash('sha256').update(JSON.stringify([list, Object.entries(options.discover).sort()])).digest('hex').slice(0, 16);
  const stateFile = join(dataDir, 'tmdb', `${listKey}.json`);
  const state = !options.restart && existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as { next_page: number }) : { next_page: 1 };

  const listed = await getJson<{ genres?: { id?: unknown; name?: unknown }[] }>(endpoint(options, 'genre/movie/list'), options, log);
  const genres = new Map<number, string>();
  for (const g of Array.isArray(listed.genres) ? listed.genres : []) {
    if (typeof g?.id === 'number' && typeof g.name === 'string' && g.name.trim()) genres.set(g.id, g.name.trim());
  }
  const report: TmdbReport = { list, pages: [], movies: 0, added: 0, skipped: 0, failed: [], next_page: state.next_page };
  let page = state.next_page;
  let lastPage = Infinity;
  for (let read = 0; read < options.pages && page <= lastPage; read++, page++) {
    const url = endpoint(options, list);
    for (const [key, value] of Object.entries(options.discover)) url.searchParams.set(key, value);
    url.searchParams.set('page', String(page));
    const body = await getJson<{ page: number; results: Movie[]; total_pages: number }>(url, options, log);
    lastPage = Math.min(body.total_pages, 500); // TMDB serves no page after 500
    for (const movie of body.results) {
      report.movies += 1;
      const outcome = await importMovie(movie, genres, options, deps).catch((error: Error) => ({ failed: error.message }));
      if (outcome === 'added') report.added += 1;
      else if (outcome === 'skipped') report.skipped += 1;
      else {
        report.failed.push({
          tmdb_id: Number.isSafeInteger(movie.id) ? (movie.id as number) : null,
          title: typeof movie.title === 'string' ? movie.title : null,
          reason: outcome.failed,
        });
      }
      deps.onProgress?.(report.movies, options.pages * 20);
    }
    report.pages.push(page);
    report.next_page = page + 1 <= lastPage ? page + 1 : null;
    writeAtomically(stateFile, JSON.stringify({ next_page: report.next_page ?? page + 1, list, discover: options.discover }));
  }
  return report;
}

async function importMovie(movie: Movie, genres: Map<number, string>, options: TmdbOptions, deps: TmdbDeps): Promise<'added' | 'skipped' | { failed: string }> {
  const { catalog, dataDir, maxPixels } = deps;
  // The id names the poster's image file (and a delete removes that file): a safe positive integer only.
  if (typeof movie.id !== 'number' || !Number.isSafeInteger(movie.id) || movie.id < 1) {
    return { failed: `id ${JSON.stringify(movie.id) ?? 'undefined'} is not a positive integer` };
  }
  const id = `tmdb-${movie.id}`;
  const idProblem = posterIdProblem(id);
  if (idProblem) return { failed: idProblem };
  if ((await catalog.get(id)) || (await catalog.isDeleted(id))) return 'skipped';
  if (!movie.poster_path) return { failed: 'no poster' };
  if (typeof movie.poster_path !== 'string' || !POSTER_PATH.test(movie.poster_path)) {
    return { failed: `poster path ${JSON.stringify(movie.poster_path)} is not a file name` };
  }
  const genreIds = Array.isArray(movie.genre_ids) ? (movie.genre_ids as unknown[]) : [];
  const names = genreIds.map((g) => (typeof g === 'number' ? genres.get(g) : undefined)).filter((g): g is string => Boolean(g));
  if (names.length === 0) return { failed: 'no genres' };
  const url = new URL(`${options.imageUrl.replace(/\/$/, '')}/${options.size}${movie.poster_path}`);
  const response = await get(url, options, deps.log, false);
  if (response.status !== 200) {
    await response.body?.cancel();
    return { failed: `poster ${url.pathname} answered HTTP ${response.status}` };
  }
  const bytes = await readCapped(response, deps.maxPosterBytes, `poster ${url.pathname}`);
  let image;
  try {
    image = await decodeRgb(bytes, maxPixels);
  } catch (error) {
    return { failed: `poster: ${(error as Error).message}` };
  }
  const name = imageName(id, image.format);
  writeAtomically(join(dataDir, 'images', name), bytes);
  const title = typeof movie.title === 'string' ? movie.title : null;
  const releaseDate = typeof movie.release_date === 'string' && movie.release_date ? movie.release_date : null;
  const year = releaseDate && /^\d{4}/.test(releaseDate) ? Number(releaseDate.slice(0, 4)) : null;
  await catalog.upsert(
    {
      id,
      title,
      year,
      releaseDate,
      genres: names,
      singleGenre: names[0]!,
      split: null,
      imagePath: `images/${name}`,
      imageSha256: createHash('sha256').update(bytes).digest('hex'),
      pixelSha256: image.pixelSha256,
      width: image.width,
      height: image.height,
      source: {
        tmdb_id: movie.id,
        popularity: typeof movie.popularity === 'number' ? movie.popularity : null,
        original_language: typeof movie.original_language === 'string' ? movie.original_language : null,
      },
    },
    new Date().toISOString(),
  );
  return 'added';
}
