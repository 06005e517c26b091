import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parse } from 'csv-parse/sync';
import { ConfigError } from '../config.js';
import { decodeRgb } from '../model/preprocess.js';
import type { Catalog, Poster } from '../state/catalog.js';
import type { Labels } from './metrics.js';

/** A poster asked about: a catalog poster of the query split, or a row of an external movies.csv. */
export interface QueryItem extends Labels {
  id: string;
  /** The catalog key of this very picture (by pixels), or -1: the gallery row never returned for it. */
  key: number;
  path: string;
  pixelSha256: string;
}

export interface SkippedQuery {
  line: number;
  id: string | null;
  reason: string;
}

export interface QuerySet {
  /** `split:test` or `csv:<file name>`. */
  source: string;
  /** Pictures from outside the catalog's embeddings: they are embedded on the fly. */
  external: boolean;
  items: QueryItem[];
  skipped: SkippedQuery[];
}

export function posterItem(poster: Poster, dataDir: string): QueryItem {
  return {
    id: poster.id,
    key: poster.key,
    singleGenre: poster.singleGenre,
    genres: poster.genres,
    path: join(dataDir, poster.imagePath),
    pixelSha256: poster.pixelSha256,
  };
}

/**
 * An external query set in the catalog's CSV format (id, genres, optional single_genre, file).
 * `file` is relative to `imagesDir`, by default the CSV's own directory. Rows without genres or
 * with an unreadable picture are skipped and reported; every picture is decoded here once, to
 * know its pixels' identity (a query that is a catalog poster must not find itself).
 */
export async function loadQueryCsv(csvPath: string, imagesDir: string | undefined, catalog: Catalog, maxPixels: number): Promise<QuerySet> {
  let text: string;
  try {
    text = readFileSync(csvPath, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read the query set ${csvPath}: ${(error as Error).message}`);
  }
  const records = parse(text, {
    columns: (header: string[]) => header.map((h) => h.trim()),
    bom: true,
    skip_empty_lines: true,
    info: true,
  }) as unknown as { record: Record<string, string>; info: { lines: number } }[];
  const base = resolve(imagesDir ?? dirname(csvPath));
  const items: QueryItem[] = [];
  const skipped: SkippedQuery[] = [];
  for (const { record, info } of records) {
    const id = record.id?.trim() || null;
    const genres = (record.genres ?? '').split('|').map((g) => g.trim()).filter(Boolean);
    const file = record.file?.trim() ?? '';
    if (genres.length === 0) {
      skipped.push({ line: info.lines, id, reason: 'no genres' });
      continue;
    }
    if (!file) {
      skipped.push({ line: info.lines, id, reason: 'no file' });
      continue;
    }
    const path = resolve(base, file);
    let pixelSha256: string;
    try {
      pixelSha256 = (await decodeRgb(await readFile(path), maxPixels)).pixelSha256;
    } catch (error) {
      skipped.push({ line: info.lines, id, reason: `file "${file}": ${(error as Error).message}` });
      continue;
    }
    items.push({
      id: id ?? `line ${info.lines}`,
      key: (await catalog.byPixelSha256(pixelSha256))?.key ?? -1,
      singleGenre: record.single_genre?.trim() || genres[0]!,
      genres,
      path,
      pixelSha256,
    });
  }
  if (items.length === 0) throw new ConfigError(`the query set ${csvPath} has no usable rows`);
  return { source: `csv:${basename(csvPath)}`, external: true, items, skipped };
}
