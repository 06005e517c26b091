import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { decodeRgb } from '../model/preprocess.js';
import type { Catalog } from '../state/catalog.js';
import type { Db } from '../state/db.js';
import { writeAtomically } from '../state/files.js';
import { imageName } from './importer.js';

/**
 * `marquee import-tmdb`: the catalog the paper built, from TMDB's API v3. The genre list (ids to
 * names), then pages of `movie/popular` (or `discover/movie` with its filters); each movie's poster
 * is downloaded from the image base at the chosen size and imported as `tmdb-<id>` with its title,
 * release date, year, genres in TMDB's order, and TMDB's id, popularity and original language.
 * Rate limits are honoured (429 and Retry-After); the next page to read is kept in the data dir,
 * so a second run goes on where the first stopped; movies already imported are skipped.
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
  failed: { tmdb_id: number; title: string | null; reason: string }[];
  next_page: number | null;
}

interface Movie {
  id: number;
  title?: string;
  release_date?: string;
  genre_ids?: number[];
  poster_path?: string | null;
  popularity?: number;
  original_language?: string;
}

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

async function getJson<T>(url: URL, options: TmdbOptions, log: Logger): Promise<T> {
  const response = await get(url, options, log);
  if (response.status === 401) throw new TmdbError('TMDB refused the credentials (401): check TMDB_API_KEY or TMDB_BEARER_TOKEN');
  if (response.status !== 200) throw new TmdbError(`${url.pathname} answered HTTP ${response.status}: ${(await response.text()).slice(0, 200)}`);
  return (await response.json()) as T;
}

function endpoint(options: TmdbOptions, path: string): URL {
  return new URL(`${options.apiUrl.replace(/\/$/, '')}/${path}`);
}

export interface TmdbDeps {
  db: Db;
  catalog: Catalog;
  dataDir: string;
  maxPixels: number;
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

  const genres = new Map(
    (await getJson<{ genres: { id: number; name: string }[] }>(endpoint(options, 'genre/movie/list'), options, log)).genres.map((g) => [g.id, g.name]),
  );
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
      else report.failed.push({ tmdb_id: movie.id, title: movie.title ?? null, reason: outcome.failed });
      deps.onProgress?.(report.movies, options.pages * 20);
    }
    report.pages.push(page);
    report.next_page = page + 1 <= lastPage ? page + 1 : null;
    writeAtomically(stateFile, JSON.stringify({ next_page: report.next_page ?? page + 1, list, discover: options.discover }));
  }
  return report;
}

async function importMovie(movie: Movie, genres: Map<number, string>, options: TmdbOptions, deps: TmdbDeps): Promise<'added' | 'skipped' | { failed: string }> {
  const { catalog, db, dataDir, maxPixels } = deps;
  const id = `tmdb-${movie.id}`;
  if (catalog.get(id) || catalog.isDeleted(id)) return 'skipped';
  if (!movie.poster_path) return { failed: 'no poster' };
  const names = (movie.genre_ids ?? []).map((g) => genres.get(g)).filter((g): g is string => Boolean(g));
  if (names.length === 0) return { failed: 'no genres' };
  const url = new URL(`${options.imageUrl.replace(/\/$/, '')}/${options.size}${movie.poster_path}`);
  const response = await get(url, options, deps.log, false);
  if (response.status !== 200) return { failed: `poster ${url.pathname} answered HTTP ${response.status}` };
  const bytes = Buffer.from(await response.arrayBuffer());
  let image;
  try {
    image = await decodeRgb(bytes, maxPixels);
  } catch (error) {
    return { failed: `poster: ${(error as Error).message}` };
  }
  const name = imageName(id, image.format);
  writeAtomically(join(dataDir, 'images', name), bytes);
  const year = /^\d{4}/.test(movie.release_date ?? '') ? Number(movie.release_date!.slice(0, 4)) : null;
  db.transaction(() =>
    catalog.upsert(
      {
        id,
        title: movie.title ?? null,
        year,
        releaseDate: movie.release_date || null,
        genres: names,
        singleGenre: names[0]!,
        split: null,
        imagePath: `images/${name}`,
        imageSha256: createHash('sha256').update(bytes).digest('hex'),
        pixelSha256: image.pixelSha256,
        width: image.width,
        height: image.height,
        source: { tmdb_id: movie.id, popularity: movie.popularity ?? null, original_language: movie.original_language ?? null },
      },
      new Date().toISOString(),
    ),
  )();
  return 'added';
}
