import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { SHARED_CATALOG } from './paths.js';

export interface Row {
  id: string;
  title: string;
  year: string;
  genres: string;
  single_genre: string;
  split: string;
  file: string;
  [column: string]: string;
}

let cached: Row[] | null = null;

export function sharedRows(): Row[] {
  cached ??= parse(readFileSync(join(SHARED_CATALOG, 'movies.csv'), 'utf8'), { columns: true, bom: true }) as Row[];
  return cached;
}

/** A deterministic subset: the first `perSplit[split]` rows of each split, in file order. */
export function subsetRows(perSplit: { train: number; val: number; test: number }): Row[] {
  const left: Record<string, number> = { ...perSplit };
  return sharedRows().filter((row) => (left[row.split] ?? 0) > 0 && left[row.split]!-- > 0);
}

const COLUMNS = ['id', 'title', 'year', 'genres', 'single_genre', 'split', 'file'];

function quote(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function toCsv(rows: Record<string, string>[], columns = COLUMNS): string {
  return [columns.join(','), ...rows.map((row) => columns.map((c) => quote(row[c] ?? '')).join(','))].join('\n') + '\n';
}

/**
 * The shared images that `files` name (catalog-relative, e.g. images/tt0086425.jpg), put into `dir`
 * as hard links (copies across file systems). Not a symbolic link to the shared folder: the import
 * follows no link out of its catalog.
 */
export function linkImages(dir: string, files: (string | undefined)[]): void {
  mkdirSync(join(dir, 'images'), { recursive: true });
  for (const file of new Set(files)) {
    if (!file?.startsWith('images/')) continue;
    const source = join(SHARED_CATALOG, file);
    const target = join(dir, file);
    if (!existsSync(source) || existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    try {
      linkSync(source, target);
    } catch {
      copyFileSync(source, target);
    }
  }
}

/** A catalog directory in the shared format: movies.csv beside the images of its rows. */
export function makeCatalogDir(rows: Record<string, string>[], csv = toCsv(rows)): string {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-catalog-'));
  writeFileSync(join(dir, 'movies.csv'), csv);
  linkImages(dir, rows.map((row) => row.file));
  mkdirSync(join(dir, 'extra'));
  return dir;
}

export function posterPath(id: string): string {
  return join(SHARED_CATALOG, 'images', `${id}.jpg`);
}
