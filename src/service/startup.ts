import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { importCatalog } from '../catalog/importer.js';
import { ensureBaseModel } from '../model/base-model.js';
import { DecodeBudget } from '../model/decode-budget.js';
import { DecodePool } from '../model/decode-pool.js';
import { Decodes } from '../model/decodes.js';
import type { Embedder } from '../model/embedder.js';
import { variantPolicy } from '../model/precision.js';
import { servedVariant } from '../model/quantization.js';
import { startProgress } from '../progress.js';
import type { Catalog } from '../state/catalog.js';
import type { EmbeddingStore } from '../state/embeddings.js';
import type { EvaluationStore } from '../state/evaluations.js';
import { sweepTemporaryFiles } from '../state/files.js';
import { linkSharedDir } from '../state/shared-dir.js';
import type { JobStore } from '../state/jobs.js';
import type { ModelRegistry, ModelVersion } from '../state/models.js';
import { State } from '../state/state.js';
import type { PosterTitles } from '../state/titles.js';
import { embedCatalog } from './catalog-embedding.js';
import { Engine, loadEmbedder } from './engine.js';
import { Fleet } from './fleet.js';
import { NearDuplicates } from './near-duplicates.js';
import type { Runtime } from './runtime.js';
import { adoptShippedEmbeddings, shippedEmbeddingsFile } from './shipped-embeddings.js';

export interface Services {
  config: Config;
  /** The database and its stores; the stores below are the same ones, by name. */
  state: State;
  catalog: Catalog;
  models: ModelRegistry;
  embeddings: EmbeddingStore;
  jobs: JobStore;
  /** The reports `marquee eval` stored, served by GET /admin/models/{version}/report. */
  evaluations: EvaluationStore;
  /** The full-text index of titles (GET /posters?q=). */
  titles: PosterTitles;
  /** Every poster's perceptual hash: near-duplicate checks and groups. */
  duplicates: NearDuplicates;
  log: Logger;
  metrics: Metrics;
  /** Every decode of the server (uploads, the import, the catalog's embedding), within one decode budget. */
  decodes: Decodes;
  /** This server among the others on a shared database (set once it serves); null alone. */
  fleet: Fleet | null;
}

/**
 * The services of one process over its database (opened here, and only here: the data dir's SQLite
 * file, or MARQUEE_DATABASE_URL's PostgreSQL), or over a database in memory (`inMemory`: the OpenAPI document, tests of the HTTP layer).
 */
export async function createServices(config: Config, log: Logger, metrics: Metrics, options: { inMemory?: boolean } = {}): Promise<Services> {
  metrics.decodeBudget.set(config.decodeBudgetBytes);
  let peak = 0;
  const budget = new DecodeBudget({
    bytes: config.decodeBudgetBytes,
    slots: config.decodeConcurrency,
    maxWaiting: config.queueMax,
    onChange(inUse, waiting) {
      metrics.decodeBytes.set(inUse);
      metrics.decodeWaiting.set(waiting);
      if (inUse > peak) metrics.decodePeakBytes.set((peak = inUse));
    },
    onRefusal: () => metrics.decodeRefusals.inc(),
  });
  const decodes = new Decodes(config.maxPixels, budget, new DecodePool(config.decodeConcurrency));
  const variants = variantPolicy(config.precision, config.device);
  if (config.sharedDir && !options.inMemory) linkSharedDir(config.dataDir, config.sharedDir);
  const state = options.inMemory ? State.inMemory(variants) : await State.connect(config, variants);
  const { catalog, models, embeddings, jobs, evaluations, titles, hashes } = state;
  return {
    config,
    state,
    catalog,
    models,
    embeddings,
    jobs,
    evaluations,
    titles,
    duplicates: new NearDuplicates({ catalog, hashes, dataDir: config.dataDir, maxPixels: config.maxPixels, log, budget }),
    log,
    metrics,
    decodes,
    fleet: null,
  };
}

/**
 * Perceptual hashes for the posters without one (every poster, the first time a data dir has
 * hashes), made once the service is ready: until they are, near-duplicate checks answer 503.
 */
async function hashCatalog({ duplicates, log }: Services): Promise<void> {
  let progress: ReturnType<typeof startProgress> | null = null;
  const hashed = await duplicates.fillMissing((done, total) => {
    progress ??= startProgress(log, 'hashing posters for near-duplicate checks', total);
    progress.tick(done);
  });
  (progress as ReturnType<typeof startProgress> | null)?.finish();
  if (hashed !== null) log.info({ hashed }, 'near-duplicate checks ready');
}

/**
 * Model files that no version names: a registration killed between copying the file and recording
 * it. Only exclusive commands (serve, train, index, models) register models, so none is in flight.
 */
async function sweepUnregisteredModels(dataDir: string, models: ModelRegistry): Promise<string[]> {
  const dir = join(dataDir, 'models');
  if (!existsSync(dir)) return [];
  const named = new Set(await models.files());
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (named.has(`models/${name}`)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(`models/${name}`);
  }
  return removed;
}

const sweeping = new WeakSet<Services>();

/** Marks failed the jobs no server runs any more (alone: every unfinished one; on a shared database: those whose lease lapsed). */
async function failInterruptedJobs({ jobs, log }: Services): Promise<void> {
  for (const job of await jobs.failInterrupted()) log.warn({ job: job.id }, job.error ?? 'job interrupted');
}

/**
 * On a shared database, a job whose server died (its lease lapsed) is marked failed by whichever
 * server looks next: each looks every sixth of a lease.
 */
function sweepLapsedJobs(services: Services): void {
  if (sweeping.has(services)) return; // a start tried again
  sweeping.add(services);
  const sweep = () => failInterruptedJobs(services).catch((error: unknown) => services.log.warn({ err: error }, 'could not look for lapsed jobs'));
  setInterval(() => void sweep(), services.config.jobLeaseMs / 6).unref();
}

/**
 * Brings the service to ready: seed catalog imported, a model active, every poster embedded with
 * it, its index mapped. Each step skips what is already done, so later starts take seconds.
 */
export async function startUp(services: Services, runtime: Runtime): Promise<void> {
  const { config, catalog, models, embeddings, log, metrics } = services;
  services.decodes.start();
  await failInterruptedJobs(services);
  if (config.databaseUrl) sweepLapsedJobs(services);
  // Whatever an interrupted job or write left is not in use: only registered models and indexes are.
  rmSync(join(config.dataDir, 'jobs'), { recursive: true, force: true });
  // A shared models dir may hold another server's registration in progress (its file before its row).
  const leftovers = [...sweepTemporaryFiles(config.dataDir), ...(config.sharedDir ? [] : await sweepUnregisteredModels(config.dataDir, models))];
  if (leftovers.length > 0) log.warn({ files: leftovers.slice(0, 20), count: leftovers.length }, 'removed files left by an interrupted write');
  if (config.catalogDir) {
    runtime.setStatus(`importing the catalog from ${config.catalogDir}`);
    let progress: ReturnType<typeof startProgress> | null = null;
    const report = await importCatalog(config.catalogDir, {
      catalog,
      dataDir: config.dataDir,
      maxPixels: config.maxPixels,
      decodes: services.decodes,
      onlyNew: true,
      onProgress(done, total) {
        progress ??= startProgress(log, 'importing posters', total);
        progress.tick(done);
        runtime.setStatus(`importing the catalog: ${done}/${total}`);
      },
    });
    (progress as ReturnType<typeof startProgress> | null)?.finish();
    const { skipped, ...counts } = report;
    log.info({ catalog: config.catalogDir, ...counts, skipped: skipped.length }, 'catalog imported');
    for (const row of skipped.slice(0, 20)) log.warn(row, 'catalog row skipped');
  }
  metrics.catalogSize.set(await catalog.count());
  const onStatus = (status: string) => runtime.setStatus(status);
  const model = await servedVariant(await ensureBaseModel(config, catalog, models, log, onStatus), services, onStatus);
  const embedder = await loadEmbedder(model, services);
  try {
    await serveWith(model, embedder, services, runtime, onStatus);
  } catch (error) {
    // A start that fails here may be tried again (the database came back): this attempt's session goes.
    await embedder.release();
    throw error;
  }
  if (services.state.fleet) {
    services.fleet = new Fleet(services.state.fleet, services, runtime);
    services.fleet.start();
  }
  hashCatalog(services).catch((error: unknown) => log.error({ err: error }, 'hashing posters for near-duplicate checks failed'));
}

/** The catalog embedded with the model (from a shipped file where one fits), its index loaded, and the engine put in service. */
async function serveWith(model: ModelVersion, embedder: Embedder, services: Services, runtime: Runtime, onStatus: (status: string) => void): Promise<void> {
  const { config, embeddings, log, metrics } = services;
  const shippedFile = shippedEmbeddingsFile(
    model,
    [
      { dir: config.baseModelDir, kind: 'base' },
      { dir: config.defaultModelDir, kind: 'default' },
    ],
    log,
  );
  const shipped = shippedFile
    ? await adoptShippedEmbeddings(model, embedder, embeddings, shippedFile, config.dataDir, config.maxPixels, log, onStatus, services.decodes)
    : null;
  runtime.setStatus('embedding the catalog');
  await embedCatalog(
    model,
    embedder,
    embeddings,
    config.dataDir,
    config.maxPixels,
    log,
    (done, total) => runtime.setStatus(`embedding the catalog: ${done}/${total}`),
    undefined,
    services.decodes,
  );
  if (shipped && shipped.missing > 0) {
    log.info(
      { shipped: shipped.taken, verified: shipped.verified, embedded: shipped.missing - shipped.taken, distrusted: shipped.distrusted },
      'catalog embeddings: taken from the shipped file, and embedded here',
    );
  }
  runtime.setStatus('loading the vector index');
  const engine = await Engine.load(model, services, embedder);
  runtime.swap(engine);
  metrics.setActiveModel(model.version);
  log.info({ version: model.version, posters: engine.searcher.size, provider: embedder.provider }, 'ready');
}
