import { existsSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/log.js';
import { type Poster } from '../../src/state/catalog.js';
import { SqliteCatalog } from '../../src/state/sqlite/catalog.js';
import { openDb, type Db } from '../../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../../src/state/sqlite/embeddings.js';
import { variantPolicy } from '../../src/model/precision.js';
import type { ModelVersion } from '../../src/state/models.js';
import { SqliteModelRegistry } from '../../src/state/sqlite/models.js';
import { CpuMonitor } from './interference.js';
import type { RepeatOptions } from './stats.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Everything the sections share: where the data is, the active model, the test-split posters. */
export interface BenchContext {
  root: string;
  dataDir: string;
  catalogDir: string;
  cores: number;
  /** BENCH_QUICK=1: a few seconds per figure, to check that the benchmark runs; figures are not meaningful. */
  quick: boolean;
  repeat: RepeatOptions;
  httpSeconds: number;
  httpWarmupSeconds: number;
  /** The server's configuration as it would read it from this environment (batching knobs, limits). */
  config: Config;
  log: Logger;
  db: Db;
  model: ModelVersion;
  modelFile: string;
  catalog: SqliteCatalog;
  embeddings: SqliteEmbeddingStore;
  /** Test-split posters, by key. */
  testPosters: Poster[];
  /** Watches other processes' CPU use; measurements disturbed by them are retried (see CpuMonitor.clean). */
  monitor: CpuMonitor;
}

export async function createContext(env: NodeJS.ProcessEnv = process.env): Promise<BenchContext> {
  const dataDir = resolve(env.MARQUEE_DATA_DIR || join(ROOT, 'var'));
  const catalogDir = resolve(env.MARQUEE_CATALOG || join(ROOT, '..', 'shared', 'posters'));
  const cores = availableParallelism();
  const quick = env.BENCH_QUICK === '1';
  const dbFile = join(dataDir, 'marquee.db');
  if (!existsSync(dbFile)) throw new Error(`${dbFile} does not exist: start the server once (npm start) so that it fills ${dataDir}`);
  const config = loadConfig({ ...env, MARQUEE_DATA_DIR: dataDir, MARQUEE_CATALOG: catalogDir, MARQUEE_THREADS: env.MARQUEE_THREADS || String(cores) });
  const db = openDb(dbFile);
  // The variant the server serves (MARQUEE_PRECISION), so that each section measures the same file.
  const models = new SqliteModelRegistry(db, variantPolicy(config.precision, config.device));
  const model = await models.active();
  if (!model) throw new Error(`no active model in ${dbFile}: start the server once (npm start) and wait until /ready says ready`);
  const catalog = new SqliteCatalog(db);
  const embeddings = new SqliteEmbeddingStore(db);
  const posters = catalog.allSync();
  const embedded = await embeddings.count(model);
  if (embedded < posters.length) {
    throw new Error(`only ${embedded} of ${posters.length} posters are embedded with ${model.version}: let the server finish starting once`);
  }
  const testPosters = posters.filter((p) => p.split === 'test');
  if (testPosters.length === 0) throw new Error('the catalog has no test-split posters');
  return {
    root: ROOT,
    dataDir,
    catalogDir,
    cores,
    quick,
    repeat: quick ? { warmup: 1, minReps: 2, maxReps: 20, minSeconds: 0.3 } : { warmup: 3, minReps: 5, maxReps: 400, minSeconds: 4 },
    httpSeconds: quick ? 2 : 15,
    httpWarmupSeconds: quick ? 1 : 3,
    config,
    log: createLogger('warn'),
    db,
    model,
    modelFile: join(dataDir, model.filePath),
    catalog,
    embeddings,
    testPosters,
    monitor: new CpuMonitor(cores),
  };
}

export function posterBytes(ctx: BenchContext, poster: Poster): Buffer {
  return readFileSync(join(ctx.dataDir, poster.imagePath));
}

/** The poster the HTTP section uploads, and whose request work the embedding section measures: the test-split poster with the median file size. */
export function httpPoster(ctx: BenchContext): { poster: Poster; file: string; bytes: number } {
  const candidates = ctx.testPosters
    .map((p) => ({ poster: p, file: join(ctx.dataDir, p.imagePath) }))
    .map((c) => ({ ...c, bytes: statSync(c.file).size }))
    .sort((a, b) => a.bytes - b.bytes);
  return candidates[Math.floor(candidates.length / 2)]!;
}
