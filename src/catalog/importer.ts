import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parse, type CsvError } from 'csv-parse/sync';
import { ApiError } from '../errors.js';
import type { Decodes } from '../model/decodes.js';
import { identify } from '../model/preprocess.js';
import type { Catalog, NewPoster, Split } from '../state/catalog.js';
import { writeAtomically } from '../state/files.js';

export interface SkippedRow {
  line: number;
  id: string | null;
  reason: string;
}

export interface ImportReport {
  rows: number;
  added: number;
  updated: number;
  unchanged: number;
  /** Rows of posters deleted through the API: left out, so an import does not bring them back. */
  deleted: number;
  skipped: SkippedRow[];
}

export interface ImportOptions {
  catalog: Catalog;
  dataDir: string;
  maxPixels: number;
  /** The server's decodes (admitted by the decode budget it shares with uploads); none in the CLI. */
  decodes?: Decodes;
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
  /**
   * Add the ids SQLite does not have, leave the others as they are: the start-up import, which
   * must not undo changes made through the API. `marquee import` updates changed rows too.
   */
  onlyNew?: boolean;
}

interface CsvRow {
  line: number;
  fields: Record<string, string>;
}

const EXTENSIONS: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', heif: 'avif', avif: 'avif', tiff: 'tif' };
const SPLITS = new Set(['train', 'val', 'test']);

/** A row (or an API request's poster fields) that cannot be a poster; the message says why. */
export class PosterFieldError extends Error {}

/**
 * Imports a catalog directory in the format of ../shared/posters: movies.csv (id, genres, file,
 * and optionally title, year, release_date, single_genre, split) beside the images it names.
 * Idempotent: unchanged rows are left alone, posters deleted through the API stay deleted. Bad rows
 * are reported with their line and skipped.
 */
export async function importCatalog(dir: string, options: ImportOptions): Promise<ImportReport> {
  const csvPath = join(dir, 'movies.csv');
  if (!existsSync(csvPath)) throw new ApiError(400, 'no_catalog', `${csvPath} does not exist`);
  const skipped: SkippedRow[] = [];
  const rows = readRows(readFileSync(csvPath, 'utf8'), skipped);
  const report: ImportReport = { rows: rows.length + skipped.length, added: 0, updated: 0, unchanged: 0, deleted: 0, skipped };
  const imagesDir = join(options.dataDir, 'images');
  mkdirSync(imagesDir, { recursive: true });

  // Fields are checked in file order first, so "duplicate id" always means an earlier valid row.
  const valid: { line: number; fields: RowFields }[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    try {
      const fields = validateRow(row);
      if (seen.has(fields.id)) throw new PosterFieldError(`duplicate id ${fields.id}`);
      seen.add(fields.id);
      valid.push({ line: row.line, fields });
    } catch (error) {
      if (!(error instanceof PosterFieldError)) throw error;
      skipped.push({ line: row.line, id: row.fields.id?.trim() || null, reason: error.message });
    }
  }
  let done = 0;
  let next = 0;
  const worker = async () => {
    while (next < valid.length) {
      const row = valid[next++]!;
      const { id } = row.fields;
      const deleted = await options.catalog.isDeleted(id);
      if (deleted || (options.onlyNew && (await options.catalog.get(id)))) {
        report[deleted ? 'deleted' : 'unchanged'] += 1;
        options.onProgress?.(++done, valid.length);
        continue;
      }
      try {
        const poster = await withImage(dir, row.fields, imagesDir, options);
        // Checked again where it counts: a delete through the API may have come meanwhile.
        const change = await options.catalog.importPoster(poster, new Date().toISOString());
        report[change] += 1;
      } catch (error) {
        if (!(error instanceof PosterFieldError)) throw error;
        skipped.push({ line: row.line, id: row.fields.id, reason: error.message });
      }
      options.onProgress?.(++done, valid.length);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker));
  skipped.sort((a, b) => a.line - b.line);
  return report;
}

function readRows(text: string, skipped: SkippedRow[]): CsvRow[] {
  const rows: CsvRow[] = [];
  const records = parse(text, {
    columns: (header: string[]) => header.map((h) => h.trim()),
    bom: true,
    info: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    on_skip: (error: CsvError | undefined) => {
      skipped.push({ line: Number((error as { lines?: number } | undefined)?.lines ?? 0), id: null, reason: error?.message ?? 'malformed CSV row' });
      return undefined;
    },
  }) as unknown as { record: Record<string, string>; info: { lines: number } }[];
  for (const { record, info } of records) rows.push({ line: info.lines, fields: record });
  return rows;
}

export type PosterFields = Omit<NewPoster, 'imagePath' | 'imageSha256' | 'pixelSha256' | 'width' | 'height'>;
type RowFields = PosterFields & { file: string };

/**
 * The rule for a poster id, wherever one comes from (a CSV row, the API, TMDB): 1-64 letters, digits,
 * '_', '.', '-', and not "." or "..", which name folders in a path or a URL.
 */
export function posterIdProblem(id: string): string | null {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) return `id "${id}" is missing or has characters other than letters, digits, '_', '.', '-'`;
  if (id === '.' || id === '..') return `id "${id}" names a folder, not a poster`;
  return null;
}

/** A poster's genres, as PATCH /admin/posters/{id} bounds them (every genre is a row of every vote's answer). */
export const MAX_GENRES = 32;
export const MAX_GENRE_LENGTH = 64;

/** A poster's fields from text (a CSV row, or the API's form fields), checked: the one set of rules. */
export function posterFields(f: Record<string, string | undefined>): PosterFields {
  const id = f.id?.trim() ?? '';
  const idProblem = posterIdProblem(id);
  if (idProblem) throw new PosterFieldError(idProblem);
  const genres = (f.genres ?? '').split('|').map((g) => g.trim()).filter(Boolean);
  if (genres.length === 0) throw new PosterFieldError('no genres');
  if (genres.length > MAX_GENRES) throw new PosterFieldError(`${genres.length} genres: at most ${MAX_GENRES}`);
  const long = genres.find((g) => g.length > MAX_GENRE_LENGTH);
  if (long) throw new PosterFieldError(`genre "${long.slice(0, 20)}…" is longer than ${MAX_GENRE_LENGTH} characters`);
  const split = f.split?.trim() || null;
  if (split !== null && !SPLITS.has(split)) throw new PosterFieldError(`split "${split}" is not train, val or test`);
  const yearText = f.year?.trim() ?? '';
  const year = yearText === '' ? null : Number(yearText);
  if (year !== null && (!Number.isInteger(year) || year < 1870 || year > 2100)) throw new PosterFieldError(`year "${yearText}" is not a year`);
  return {
    id,
    title: f.title?.trim() || null,
    year,
    releaseDate: f.release_date?.trim() || null,
    genres,
    singleGenre: f.single_genre?.trim() || genres[0]!,
    split: split as Split | null,
  };
}

function validateRow(row: CsvRow): RowFields {
  const fields = posterFields(row.fields);
  const file = row.fields.file?.trim() ?? '';
  if (!file) throw new PosterFieldError('no file');
  return { ...fields, file };
}

/** The stored file name of a poster's image: its id and the decoded format's extension. */
export function imageName(id: string, format: string): string {
  return `${id}.${EXTENSIONS[format] ?? 'img'}`;
}

function isOutside(root: string, path: string): boolean {
  const inside = relative(root, path);
  return inside === '' || inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside);
}

async function withImage(dir: string, fields: RowFields, imagesDir: string, options: ImportOptions): Promise<NewPoster> {
  const { id, file } = fields;
  const outside = new PosterFieldError(`file "${file}" is outside the catalog directory`);
  if (isAbsolute(file) || isOutside(resolve(dir), resolve(dir, file))) throw outside;
  let bytes: Buffer;
  try {
    // Where the file really is, links followed: a link out of the catalog would import (and then
    // serve) whatever it points at.
    const [root, source] = await Promise.all([realpath(dir), realpath(resolve(dir, file))]);
    if (isOutside(root, source)) throw outside;
    bytes = await readFile(source);
  } catch (error) {
    if (error === outside) throw error;
    throw new PosterFieldError(`file "${file}" cannot be read`);
  }
  const imageSha256 = createHash('sha256').update(bytes).digest('hex');
  const known = await options.catalog.get(id);
  // Same bytes as already imported: no need to decode again (keeps re-imports and restarts fast).
  const image =
    known && known.imageSha256 === imageSha256 && existsSync(join(options.dataDir, known.imagePath))
      ? { pixelSha256: known.pixelSha256, width: known.width, height: known.height, name: known.imagePath.slice('images/'.length) }
      : await (options.decodes ? options.decodes.identify(bytes, 'background') : identify(bytes, options.maxPixels)).then(
          (decoded) => ({ ...decoded, name: imageName(id, decoded.format) }),
          (error: ApiError) => {
            throw new PosterFieldError(`file "${file}": ${error.message}`);
          },
        );
  const target = join(imagesDir, image.name);
  if (!existsSync(target) || createHash('sha256').update(readFileSync(target)).digest('hex') !== imageSha256) {
    // A copy of the catalog's file, thousands of them on a first start: not flushed one by one (that
    // would add about 80 s to the demo catalog's import here). After a power loss `marquee import`
    // finds a damaged copy by its hash, as above, and writes it again.
    writeAtomically(target, bytes, { sync: false });
  }
  const { file: _file, ...poster } = fields;
  return { ...poster, imagePath: `images/${image.name}`, imageSha256, pixelSha256: image.pixelSha256, width: image.width, height: image.height };
}
