import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parse, type CsvError } from 'csv-parse/sync';
import { ApiError } from '../errors.js';
import { decodeRgb } from '../model/preprocess.js';
import type { Catalog, NewPoster, Split } from '../state/catalog.js';
import type { Db } from '../state/db.js';
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
  skipped: SkippedRow[];
}

export interface ImportOptions {
  db: Db;
  catalog: Catalog;
  dataDir: string;
  maxPixels: number;
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
}

interface CsvRow {
  line: number;
  fields: Record<string, string>;
}

const EXTENSIONS: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', heif: 'avif', avif: 'avif', tiff: 'tif' };
const SPLITS = new Set(['train', 'val', 'test']);

class RowError extends Error {}

/**
 * Imports a catalog directory in the format of ../shared/posters: movies.csv (id, genres, file,
 * and optionally title, year, release_date, single_genre, split) beside the images it names.
 * Idempotent: unchanged rows are left alone. Bad rows are reported with their line and skipped.
 */
export async function importCatalog(dir: string, options: ImportOptions): Promise<ImportReport> {
  const csvPath = join(dir, 'movies.csv');
  if (!existsSync(csvPath)) throw new ApiError(400, 'no_catalog', `${csvPath} does not exist`);
  const skipped: SkippedRow[] = [];
  const rows = readRows(readFileSync(csvPath, 'utf8'), skipped);
  const report: ImportReport = { rows: rows.length + skipped.length, added: 0, updated: 0, unchanged: 0, skipped };
  const imagesDir = join(options.dataDir, 'images');
  mkdirSync(imagesDir, { recursive: true });

  // Fields are checked in file order first, so "duplicate id" always means an earlier valid row.
  const valid: { line: number; fields: RowFields }[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    try {
      const fields = validateRow(row);
      if (seen.has(fields.id)) throw new RowError(`duplicate id ${fields.id}`);
      seen.add(fields.id);
      valid.push({ line: row.line, fields });
    } catch (error) {
      if (!(error instanceof RowError)) throw error;
      skipped.push({ line: row.line, id: row.fields.id?.trim() || null, reason: error.message });
    }
  }
  let done = 0;
  let next = 0;
  const worker = async () => {
    while (next < valid.length) {
      const row = valid[next++]!;
      try {
        const poster = await withImage(dir, row.fields, imagesDir, options);
        const { change } = options.db.transaction(() => options.catalog.upsert(poster, new Date().toISOString()))();
        report[change] += 1;
      } catch (error) {
        if (!(error instanceof RowError)) throw error;
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

type RowFields = Omit<NewPoster, 'imagePath' | 'imageSha256' | 'pixelSha256' | 'width' | 'height'> & { file: string };

function validateRow(row: CsvRow): RowFields {
  const f = row.fields;
  const id = f.id?.trim() ?? '';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new RowError(`id "${id}" is missing or has characters other than letters, digits, '_', '.', '-'`);
  const genres = (f.genres ?? '').split('|').map((g) => g.trim()).filter(Boolean);
  if (genres.length === 0) throw new RowError('no genres');
  const split = f.split?.trim() || null;
  if (split !== null && !SPLITS.has(split)) throw new RowError(`split "${split}" is not train, val or test`);
  const yearText = f.year?.trim() ?? '';
  const year = yearText === '' ? null : Number(yearText);
  if (year !== null && (!Number.isInteger(year) || year < 1870 || year > 2100)) throw new RowError(`year "${yearText}" is not a year`);
  const file = f.file?.trim() ?? '';
  if (!file) throw new RowError('no file');
  return {
    id,
    title: f.title?.trim() || null,
    year,
    releaseDate: f.release_date?.trim() || null,
    genres,
    singleGenre: f.single_genre?.trim() || genres[0]!,
    split: split as Split | null,
    file,
  };
}

async function withImage(dir: string, fields: RowFields, imagesDir: string, options: ImportOptions): Promise<NewPoster> {
  const { id, file } = fields;
  const source = resolve(dir, file);
  const inside = relative(resolve(dir), source);
  if (isAbsolute(file) || inside.startsWith('..')) throw new RowError(`file "${file}" is outside the catalog directory`);
  let bytes: Buffer;
  try {
    bytes = await readFile(source);
  } catch {
    throw new RowError(`file "${file}" cannot be read`);
  }
  const imageSha256 = createHash('sha256').update(bytes).digest('hex');
  const known = options.catalog.get(id);
  // Same bytes as already imported: no need to decode again (keeps re-imports and restarts fast).
  const image =
    known && known.imageSha256 === imageSha256 && existsSync(join(options.dataDir, known.imagePath))
      ? { pixelSha256: known.pixelSha256, width: known.width, height: known.height, name: known.imagePath.slice('images/'.length) }
      : await decodeRgb(bytes, options.maxPixels).then(
          (decoded) => ({ ...decoded, name: `${id}.${EXTENSIONS[decoded.format] ?? 'img'}` }),
          (error: ApiError) => {
            throw new RowError(`file "${file}": ${error.message}`);
          },
        );
  const target = join(imagesDir, image.name);
  if (!existsSync(target) || createHash('sha256').update(readFileSync(target)).digest('hex') !== imageSha256) {
    writeAtomically(target, bytes);
  }
  const { file: _file, ...poster } = fields;
  return { ...poster, imagePath: `images/${image.name}`, imageSha256, pixelSha256: image.pixelSha256, width: image.width, height: image.height };
}
