import type { Poster, Split } from './catalog.js';
import { isFinal, type Job, type JobChanges, type JobState } from './jobs.js';
import { unfaithful, type ModelVersion, type Precision, type VariantPolicy } from './models.js';
import type { PreprocessingSpec } from '../model/preprocess.js';

/**
 * The rows both backends store (one schema, migrations/ and migrations/postgres/), and what the
 * stores make of them. Two things differ by backend and are read alike here: a JSON column is text
 * in SQLite and jsonb, already parsed, in PostgreSQL (none of ours holds a bare string at its top);
 * a key is a number in SQLite and a BIGINT's string in PostgreSQL.
 */
export function json<T>(value: unknown): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}

export interface PosterRow {
  key: number | string;
  id: string;
  title: string | null;
  year: number | null;
  release_date: string | null;
  genres: unknown;
  single_genre: string;
  split: Split | null;
  image_path: string;
  image_sha256: string;
  pixel_sha256: string;
  width: number;
  height: number;
  source: unknown;
}

/** A poster's columns in the order posterFromValues reads them. */
export const POSTER_COLUMNS = ['key', 'id', 'title', 'year', 'release_date', 'genres', 'single_genre', 'split', 'image_path', 'image_sha256', 'pixel_sha256', 'width', 'height', 'source'] as const;

/**
 * A poster from its columns' values in POSTER_COLUMNS' order: SQLite's reads on the search path ask
 * for rows as arrays, which better-sqlite3 makes in 60 % of the time of objects with 14 named columns
 * (8 posters: 33 against 53 µs, AVX2 EPYC).
 */
export function posterFromValues(values: unknown[]): Poster {
  const [key, id, title, year, releaseDate, genres, singleGenre, split, imagePath, imageSha256, pixelSha256, width, height, source] = values;
  return {
    key: Number(key),
    id: id as string,
    title: title as string | null,
    year: year as number | null,
    releaseDate: releaseDate as string | null,
    genres: json<string[]>(genres),
    singleGenre: singleGenre as string,
    split: split as Split | null,
    imagePath: imagePath as string,
    imageSha256: imageSha256 as string,
    pixelSha256: pixelSha256 as string,
    width: width as number,
    height: height as number,
    source: json<Record<string, unknown> | null>(source),
  };
}

export function posterFromRow(row: PosterRow): Poster {
  return posterFromValues(POSTER_COLUMNS.map((column) => row[column]));
}

export interface JobRow {
  id: string;
  kind: string;
  state: JobState;
  params: unknown;
  progress: unknown;
  metrics: unknown;
  model_version: string | null;
  error: string | null;
  log_tail: string | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export function jobFromRow(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind,
    state: row.state,
    params: json<Record<string, unknown>>(row.params),
    progress: json<Record<string, unknown> | null>(row.progress),
    metrics: json<Record<string, unknown> | null>(row.metrics),
    modelVersion: row.model_version,
    error: row.error,
    logTail: row.log_tail,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
  };
}

/**
 * The columns an update of a job writes, in this order (each backend's UPDATE names them so): the job with
 * its changes, its end recorded once (the first time it reaches a final state).
 */
export function jobUpdate(current: Job, changes: JobChanges, now: string): unknown[] {
  const next = { ...current, ...changes };
  return [
    next.state,
    next.progress ? JSON.stringify(next.progress) : null,
    next.metrics ? JSON.stringify(next.metrics) : null,
    next.modelVersion,
    next.error,
    next.logTail,
    now,
    isFinal(next.state) ? (current.finishedAt ?? now) : null,
  ];
}

export interface ModelRow {
  version: string;
  file_path: string;
  file_sha256: string;
  dims: number;
  input_width: number;
  input_height: number;
  input_name: string;
  output_name: string;
  preprocessing: unknown;
  source: unknown;
  metrics: unknown;
  checkpoint_path: string | null;
  created_at: string;
}

export interface VariantRow {
  precision: Precision;
  file_path: string;
  file_sha256: string;
  details: unknown;
}

/**
 * A version as the policy hands it out: with `precision`, that variant (null if it has none); else the
 * preferred one, unless it is an int8 the policy will not serve unchecked, or the only one it has.
 * `variants` come fp32 first (the fallback).
 */
export function modelFromRows(row: ModelRow, variants: VariantRow[], policy: VariantPolicy, precision?: Precision): ModelVersion | null {
  const servable = (v: VariantRow) => variants.length === 1 || !policy.faithfulOnly || v.precision !== 'int8' || unfaithful(json<Record<string, unknown>>(v.details)) === null;
  const chosen = precision ? variants.find((v) => v.precision === precision) : (variants.find((v) => v.precision === policy.preferred && servable(v)) ?? variants[0]);
  return chosen ? modelFromRow(row, chosen, variants.map((v) => v.precision)) : null;
}

/** Variant rows grouped by version, in their order (fp32 first, as modelFromRows takes them): what a registry's list reads in one query. */
export function variantsByVersion(rows: (VariantRow & { version: string })[]): Map<string, VariantRow[]> {
  const out = new Map<string, VariantRow[]>();
  for (const row of rows) {
    const variants = out.get(row.version);
    if (variants) variants.push(row);
    else out.set(row.version, [row]);
  }
  return out;
}

/** A version as one of its variants (`variant`), knowing every variant it has. */
function modelFromRow(row: ModelRow, variant: VariantRow, variants: Precision[]): ModelVersion {
  return {
    version: row.version,
    precision: variant.precision,
    variants,
    filePath: variant.file_path,
    fileSha256: variant.file_sha256,
    dims: row.dims,
    inputWidth: row.input_width,
    inputHeight: row.input_height,
    inputName: row.input_name,
    outputName: row.output_name,
    preprocessing: json<PreprocessingSpec>(row.preprocessing),
    source: json<Record<string, unknown>>(row.source),
    metrics: json<Record<string, unknown> | null>(row.metrics),
    checkpointPath: row.checkpoint_path,
    createdAt: row.created_at,
  };
}
