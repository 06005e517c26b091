import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUDGETED_BYTES_PER_PIXEL } from './model/preprocess.js';
import { TORCHVISION_RESNET50_URL } from './model/weights.js';
import type { PrecisionSetting } from './model/precision.js';
import { DEFAULT_EXPANSION, INDEX_SCALARS, type IndexScalar } from './search/vector-index.js';

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export type Device = 'auto' | 'cpu' | 'cuda';

/** Everything the service reads from the environment. README.md documents each variable. */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** Where several servers keep the files they all read (MARQUEE_SHARED_DIR): images, models, weights; null: in the data dir. */
  sharedDir: string | null;
  /** A PostgreSQL database several servers share (MARQUEE_DATABASE_URL, postgres://…); null: the data dir's SQLite file. */
  databaseUrl: string | null;
  /** Seed catalog imported on start; null when MARQUEE_CATALOG is set to an empty string. */
  catalogDir: string | null;
  device: Device;
  threads: number;
  /** Let onnxruntime's idle threads busy-wait for work (lower latency, but CPU taken from everything else). */
  ortSpinning: boolean;
  /** Which variant of a model to serve (MARQUEE_PRECISION): auto is int8 on a CPU with int8 dot products, fp32 on CUDA. */
  precision: PrecisionSetting;
  /** How the HNSW graph stores vectors (MARQUEE_INDEX_SCALAR); f16 and i8 halve and quarter its memory. */
  indexScalar: IndexScalar;
  /** Candidates a graph search keeps while it walks (MARQUEE_INDEX_EXPANSION): recall against speed. */
  indexExpansion: number;
  adminToken: string;
  /** Admin routes without a token, allowed only when listening on loopback. */
  adminOpenLoopback: boolean;
  maxUploadBytes: number;
  maxPixels: number;
  /** Longest a request's headers and body may take to arrive (MARQUEE_REQUEST_TIMEOUT_MS): a slower client gets 408 and is cut off. */
  requestTimeoutMs: number;
  /** Longest a request's headers may take to arrive (MARQUEE_HEADERS_TIMEOUT_MS); at most requestTimeoutMs. */
  headersTimeoutMs: number;
  /** How long an idle keep-alive connection is kept open (MARQUEE_KEEP_ALIVE_TIMEOUT_MS). */
  keepAliveTimeoutMs: number;
  /** A connection on which nothing moves either way for this long is closed (MARQUEE_CONNECTION_TIMEOUT_MS). */
  connectionTimeoutMs: number;
  /** Memory that images being decoded may take at once (MARQUEE_DECODE_BUDGET_MB): holds one 16-bit RGBA image at the pixel limit. */
  decodeBudgetBytes: number;
  /** Images decoded at once. */
  decodeConcurrency: number;
  batchMaxSize: number;
  batchMaxWaitMs: number;
  queueMax: number;
  /** How long a request with Marquee-Min-Change waits for this server to apply that change (MARQUEE_MIN_CHANGE_WAIT_MS). */
  minChangeWaitMs: number;
  /** Several servers: how long a retrain's lease lasts unrenewed (MARQUEE_JOB_LEASE_MS); its runner renews it six times as often. */
  jobLeaseMs: number;
  /** Several servers: how long a start waits for the database to come back (MARQUEE_DATABASE_WAIT_MS), e.g. through a failover. */
  databaseWaitMs: number;
  /** A directory made by `python -m training export-base`, registered instead of exporting one. */
  baseModelDir: string | null;
  baseInput: { width: number; height: number };
  /** ImageNet weights of the base model (path or URL); null: opted out (MARQUEE_BASE_WEIGHTS=none). */
  baseWeights: string | null;
  baseWeightsSha256: string | null;
  weightsConnectTimeoutMs: number;
  /** A read-only directory that may hold the weights file already (the Docker image bakes it there). */
  weightsDir: string | null;
  /** The trained model shipped with Marquee, served when no ImageNet weights can be had; null: none. */
  defaultModelDir: string | null;
  python: string | null;
  logLevel: string;
}

export class ConfigError extends Error {}

/**
 * The largest image accepted. Posters are a few megapixels (a TMDB original is 2000x3000, 6 Mpx);
 * 16 Mpx leaves room for a 3266x4900 scan, and its decode (48 MB as 8-bit RGB, 176 MB at most for
 * 16-bit RGBA) fits the default decode budget, where 40 Mpx took 120 MB as RGB.
 */
export const DEFAULT_MAX_PIXELS = 16_000_000;

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  }
  return value;
}

function optionalPath(env: Env, name: string): string | null {
  const raw = env[name];
  return raw ? resolve(raw) : null;
}

function size(env: Env, name: string, fallback: { width: number; height: number }) {
  const raw = env[name];
  if (!raw) return fallback;
  const match = /^(\d+)x(\d+)$/.exec(raw);
  if (!match) throw new ConfigError(`${name} must look like WIDTHxHEIGHT, got "${raw}"`);
  return { width: Number(match[1]), height: Number(match[2]) };
}

export function loadConfig(env: Env = process.env): Config {
  const device = (env.MARQUEE_DEVICE || 'auto') as Device;
  if (!['auto', 'cpu', 'cuda'].includes(device)) {
    throw new ConfigError(`MARQUEE_DEVICE must be auto, cpu or cuda, got "${env.MARQUEE_DEVICE}"`);
  }
  const indexScalar = (env.MARQUEE_INDEX_SCALAR || 'f32') as IndexScalar;
  if (!INDEX_SCALARS.includes(indexScalar)) {
    throw new ConfigError(`MARQUEE_INDEX_SCALAR must be one of ${INDEX_SCALARS.join(', ')}, got "${env.MARQUEE_INDEX_SCALAR}"`);
  }
  const precision = (env.MARQUEE_PRECISION || 'auto') as PrecisionSetting;
  if (!['auto', 'fp32', 'int8'].includes(precision)) {
    throw new ConfigError(`MARQUEE_PRECISION must be auto, fp32 or int8, got "${env.MARQUEE_PRECISION}"`);
  }
  const catalog = env.MARQUEE_CATALOG ?? '../shared/posters';
  const host = env.HOST || '127.0.0.1';
  if (env.MARQUEE_ADMIN_OPEN_LOOPBACK === '1' && !isLoopback(host)) {
    throw new ConfigError(`MARQUEE_ADMIN_OPEN_LOOPBACK=1 opens the admin routes without a token, which is refused on HOST=${host}: listen on 127.0.0.1 or set MARQUEE_ADMIN_TOKEN`);
  }
  const maxPixels = int(env, 'MARQUEE_MAX_PIXELS', DEFAULT_MAX_PIXELS, 1);
  const decodeBudgetMb = int(env, 'MARQUEE_DECODE_BUDGET_MB', 256, 1, 1024 * 1024);
  const largestDecodeMb = Math.ceil((maxPixels * BUDGETED_BYTES_PER_PIXEL) / 2 ** 20);
  if (decodeBudgetMb < largestDecodeMb) {
    throw new ConfigError(
      `MARQUEE_DECODE_BUDGET_MB=${decodeBudgetMb} cannot hold one image at the pixel limit (MARQUEE_MAX_PIXELS=${maxPixels}: up to ${largestDecodeMb} MB to decode): raise it to ${largestDecodeMb} or lower MARQUEE_MAX_PIXELS`,
    );
  }
  const requestTimeoutMs = int(env, 'MARQUEE_REQUEST_TIMEOUT_MS', 60_000, 100, 3_600_000);
  const headersTimeoutMs = int(env, 'MARQUEE_HEADERS_TIMEOUT_MS', Math.min(10_000, requestTimeoutMs), 100, 3_600_000);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(`MARQUEE_HEADERS_TIMEOUT_MS=${headersTimeoutMs} is longer than MARQUEE_REQUEST_TIMEOUT_MS=${requestTimeoutMs}, which includes the headers`);
  }
  return {
    port: int(env, 'PORT', 8080, 0, 65535),
    host,
    dataDir: resolve(env.MARQUEE_DATA_DIR || './var'),
    databaseUrl: databaseUrl(env.MARQUEE_DATABASE_URL),
    sharedDir: env.MARQUEE_SHARED_DIR ? resolve(env.MARQUEE_SHARED_DIR) : null,
    catalogDir: catalog === '' ? null : resolve(catalog),
    device,
    threads: int(env, 'MARQUEE_THREADS', availableParallelism(), 1, 1024),
    ortSpinning: (env.MARQUEE_ORT_SPINNING ?? '1') !== '0',
    precision,
    indexScalar,
    indexExpansion: int(env, 'MARQUEE_INDEX_EXPANSION', DEFAULT_EXPANSION, 1, 4096),
    adminToken: env.MARQUEE_ADMIN_TOKEN ?? '',
    adminOpenLoopback: env.MARQUEE_ADMIN_OPEN_LOOPBACK === '1',
    maxUploadBytes: int(env, 'MARQUEE_MAX_UPLOAD_BYTES', 10 * 1024 * 1024, 1),
    maxPixels,
    requestTimeoutMs,
    headersTimeoutMs,
    keepAliveTimeoutMs: int(env, 'MARQUEE_KEEP_ALIVE_TIMEOUT_MS', 72_000, 100, 3_600_000),
    connectionTimeoutMs: int(env, 'MARQUEE_CONNECTION_TIMEOUT_MS', 120_000, 100, 3_600_000),
    decodeBudgetBytes: decodeBudgetMb * 2 ** 20,
    decodeConcurrency: int(env, 'MARQUEE_DECODE_CONCURRENCY', availableParallelism(), 1, 1024),
    batchMaxSize: int(env, 'MARQUEE_BATCH_MAX_SIZE', 16, 1, 1024),
    batchMaxWaitMs: int(env, 'MARQUEE_BATCH_MAX_WAIT_MS', 0, 0, 10_000),
    queueMax: int(env, 'MARQUEE_QUEUE_MAX', 64, 1),
    minChangeWaitMs: int(env, 'MARQUEE_MIN_CHANGE_WAIT_MS', 2000, 0, 60_000),
    jobLeaseMs: int(env, 'MARQUEE_JOB_LEASE_MS', 30_000, 1000, 3_600_000),
    databaseWaitMs: int(env, 'MARQUEE_DATABASE_WAIT_MS', 120_000, 0, 3_600_000),
    baseModelDir: optionalPath(env, 'MARQUEE_BASE_MODEL'),
    baseInput: size(env, 'MARQUEE_BASE_INPUT', { width: 160, height: 240 }),
    baseWeights: baseWeights(env),
    baseWeightsSha256: sha256(env, 'MARQUEE_BASE_WEIGHTS_SHA256'),
    weightsConnectTimeoutMs: int(env, 'MARQUEE_WEIGHTS_CONNECT_TIMEOUT_MS', 3000, 1, 600_000),
    weightsDir: optionalPath(env, 'MARQUEE_WEIGHTS_DIR'),
    defaultModelDir: env.MARQUEE_DEFAULT_MODEL === '' ? null : resolve(env.MARQUEE_DEFAULT_MODEL ?? join(PACKAGE_ROOT, 'models', 'default')),
    python: env.MARQUEE_PYTHON || null,
    logLevel: env.LOG_LEVEL || 'info',
  };
}

function baseWeights(env: Env): string | null {
  const raw = env.MARQUEE_BASE_WEIGHTS;
  if (raw === undefined || raw === '') return TORCHVISION_RESNET50_URL;
  if (raw === 'none') return null;
  return /^https?:\/\//.test(raw) ? raw : resolve(raw);
}

function sha256(env: Env, name: string): string | null {
  const raw = env[name];
  if (!raw) return null;
  if (!/^[0-9a-fA-F]{64}$/.test(raw)) throw new ConfigError(`${name} must be 64 hexadecimal characters (a SHA-256), got "${raw}"`);
  return raw.toLowerCase();
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function databaseUrl(value: string | undefined): string | null {
  if (!value) return null;
  if (!/^postgres(ql)?:\/\//.test(value)) throw new ConfigError(`MARQUEE_DATABASE_URL must be a postgres:// URL, got ${JSON.stringify(value.split('@').pop())}`);
  return value;
}
