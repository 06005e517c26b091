import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

export type Device = 'auto' | 'cpu' | 'cuda';

/** Everything the service reads from the environment. README.md documents each variable. */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** Seed catalog imported on start; null when MARQUEE_CATALOG is set to an empty string. */
  catalogDir: string | null;
  device: Device;
  threads: number;
  /** Let onnxruntime's idle threads busy-wait for work (lower latency, but CPU taken from everything else). */
  ortSpinning: boolean;
  adminToken: string;
  /** Admin routes without a token, allowed only when listening on loopback. */
  adminOpenLoopback: boolean;
  maxUploadBytes: number;
  maxPixels: number;
  batchMaxSize: number;
  batchMaxWaitMs: number;
  queueMax: number;
  /** A directory made by `python -m training export-base`, registered instead of exporting one. */
  baseModelDir: string | null;
  baseInput: { width: number; height: number };
  baseWeights: string | null;
  baseWeightsSha256: string | null;
  python: string | null;
  logLevel: string;
}

export class ConfigError extends Error {}

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
  const catalog = env.MARQUEE_CATALOG ?? '../shared/posters';
  const host = env.HOST || '127.0.0.1';
  if (env.MARQUEE_ADMIN_OPEN_LOOPBACK === '1' && !isLoopback(host)) {
    throw new ConfigError(`MARQUEE_ADMIN_OPEN_LOOPBACK=1 opens the admin routes without a token, which is refused on HOST=${host}: listen on 127.0.0.1 or set MARQUEE_ADMIN_TOKEN`);
  }
  return {
    port: int(env, 'PORT', 8080, 0, 65535),
    host,
    dataDir: resolve(env.MARQUEE_DATA_DIR || './var'),
    catalogDir: catalog === '' ? null : resolve(catalog),
    device,
    threads: int(env, 'MARQUEE_THREADS', availableParallelism(), 1, 1024),
    ortSpinning: (env.MARQUEE_ORT_SPINNING ?? '1') !== '0',
    adminToken: env.MARQUEE_ADMIN_TOKEN ?? '',
    adminOpenLoopback: env.MARQUEE_ADMIN_OPEN_LOOPBACK === '1',
    maxUploadBytes: int(env, 'MARQUEE_MAX_UPLOAD_BYTES', 10 * 1024 * 1024, 1),
    maxPixels: int(env, 'MARQUEE_MAX_PIXELS', 40_000_000, 1),
    batchMaxSize: int(env, 'MARQUEE_BATCH_MAX_SIZE', 16, 1, 1024),
    batchMaxWaitMs: int(env, 'MARQUEE_BATCH_MAX_WAIT_MS', 0, 0, 10_000),
    queueMax: int(env, 'MARQUEE_QUEUE_MAX', 64, 1),
    baseModelDir: optionalPath(env, 'MARQUEE_BASE_MODEL'),
    baseInput: size(env, 'MARQUEE_BASE_INPUT', { width: 160, height: 240 }),
    baseWeights: env.MARQUEE_BASE_WEIGHTS || null,
    baseWeightsSha256: env.MARQUEE_BASE_WEIGHTS_SHA256 || null,
    python: env.MARQUEE_PYTHON || null,
    logLevel: env.LOG_LEVEL || 'info',
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
