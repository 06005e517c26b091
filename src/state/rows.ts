import type { Poster, Split } from './catalog.js';
import { isFinal, type Job, type JobChanges, type JobState } from './jobs.js';
import type { ModelVersion, Precision } from './models.js';
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

export function posterFromRow(row: PosterRow): Poster {
  return {
    key: Number(row.key),
    id: row.id,
    title: row.title,
    year: row.year,
    releaseDate: row.release_date,
    genres: json<string[]>(row.genres),
    singleGenre: row.single_genre,
    split: row.split,
    imagePath: row.image_path,
    imageSha256: row.image_sha256,
    pixelSha256: row.pixel_sha256,
    width: row.width,
    height: row.height,
    source: json<Record<string, unknown> | null>(row.source),
  };
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

/** A version as one of its variants (`variant`), knowing every variant it has. */
export function modelFromRow(row: ModelRow, variant: VariantRow, variants: Precision[]): ModelVersion {
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
