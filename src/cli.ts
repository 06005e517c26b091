import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.js';
import { insufficientStorage, isDatabaseUnavailable, isStorageFull } from './errors.js';
import { importCatalog } from './catalog/importer.js';
import { importTmdb, TmdbError } from './catalog/tmdb.js';
import { parseCommandOptions } from './command-options.js';
import { renderInputs, writeManifest } from './catalog/manifest.js';
import { defaultSpec } from './model/preprocess.js';
import { evalCommand } from './eval/command.js';
import { figuresCommand } from './figures/command.js';
import { buildApp } from './http/server.js';
import { createLogger, type Logger } from './log.js';
import { Metrics } from './metrics.js';
import { ensureBaseModel } from './model/base-model.js';
import { servedVariant } from './model/quantization.js';
import { registerModelDir } from './model/registration.js';
import { startProgress } from './progress.js';
import { embedCatalog } from './service/catalog-embedding.js';
import { Engine, indexPath, loadEmbedder } from './service/engine.js';
import { parseRetrainFlags } from './jobs/flags.js';
import { RetrainRunner } from './jobs/retrain.js';
import { Runtime } from './service/runtime.js';
import { shipEmbeddingsCommand } from './service/ship-embeddings.js';
import { createServices, startUp, type Services } from './service/startup.js';
import { claimDataDir, DataDirBusy } from './state/processes.js';

const HELP = `marquee: find movie posters that look alike

Usage: marquee <command> [options]

Commands:
  serve                 Start the HTTP API (imports MARQUEE_CATALOG, exports and indexes a base model on first start)
  import <dir>          Import a catalog directory (movies.csv + images); idempotent, bad rows reported and skipped
  import-tmdb [options] Import movies and their posters from TMDB's API (marquee import-tmdb --help)
  index                 Re-embed the whole catalog with the active model and rebuild its index
  manifest <file> [WxH] Write the training manifest of the catalog, each poster's model input rendered by the
                        server's preprocessing at WxH (default 96x144), for \`python -m training train\`
                        on this or another machine
  models add <dir>      Register a model directory made by the training package (model.onnx + model.json),
                        e.g. trained on another machine, with its int8 variant where int8 serves (MARQUEE_PRECISION);
                        prints its version (activate it with the API)
  train [--mode head|full] [--epochs N] [--force] ...
                        Retrain without the server (the same job as POST /admin/retrain; flags are its
                        JSON fields with dashes, e.g. --batch-size 32); activates the model if better
  eval [options]        Evaluate a model version on the test split beside baselines (marquee eval --help)
  figures [options]     Draw the embedding map, a retrieval grid and per-genre bar charts as PNG (marquee figures --help)
  openapi [file]        Write the OpenAPI document (default openapi/openapi.json)
  ship-embeddings [--model DIR] [--catalog DIR]
                        Write the catalog embeddings shipped beside a model (default models/default and
                        MARQUEE_CATALOG), which a first start takes instead of embedding every poster

Configuration is read from environment variables; README.md lists them all.`;

function services(config: Config, log: Logger): Promise<Services> {
  return createServices(config, log, new Metrics());
}

/**
 * `step`, tried again every second while the shared database is unavailable (down, starting, a
 * standby being promoted), for up to MARQUEE_DATABASE_WAIT_MS: a server that starts during a failover
 * comes up once the database is back rather than exit. Each step of a start skips what is done.
 */
async function whileDatabaseUnavailable<T>(config: Config, log: Logger, what: string, step: () => Promise<T>): Promise<T> {
  const started = performance.now();
  for (;;) {
    try {
      return await step();
    } catch (error) {
      if (!config.databaseUrl || !isDatabaseUnavailable(error) || performance.now() - started > config.databaseWaitMs) throw error;
      log.warn({ err: error }, `${what}: the database is unavailable; trying again in 1 s`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function serve(config: Config, log: Logger): Promise<void> {
  const svc = await whileDatabaseUnavailable(config, log, 'connecting', () => services(config, log));
  const runtime = new Runtime();
  const runner = new RetrainRunner(svc, svc.jobs, runtime);
  const app = await buildApp(svc, runtime, runner);
  await app.listen({ port: config.port, host: config.host });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await app.close();
    runner.cancelRunning();
    await runner.settled();
    await svc.fleet?.stop();
    await svc.duplicates.stop();
    await runtime.peek()?.dispose();
    await svc.state.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  try {
    await whileDatabaseUnavailable(config, log, 'start-up', () => startUp(svc, runtime));
  } catch (error) {
    log.fatal({ err: error }, isStorageFull(error) ? `start-up failed: ${insufficientStorage(error).message}` : 'start-up failed');
    await app.close();
    process.exit(1);
  }
}

async function importCommand(config: Config, log: Logger, dir: string | undefined): Promise<void> {
  if (!dir) throw new ConfigError('usage: marquee import <dir>');
  const svc = await services(config, log);
  let progress: ReturnType<typeof startProgress> | null = null;
  const report = await importCatalog(resolve(dir), {
    catalog: svc.catalog,
    dataDir: config.dataDir,
    maxPixels: config.maxPixels,
    onProgress(done, total) {
      progress ??= startProgress(log, 'importing posters', total);
      progress.tick(done);
    },
  });
  (progress as ReturnType<typeof startProgress> | null)?.finish();
  for (const row of report.skipped) process.stderr.write(`line ${row.line}${row.id ? ` (${row.id})` : ''}: ${row.reason}\n`);
  process.stdout.write(`${JSON.stringify({ ...report, skipped: report.skipped.length })}\n`);
  await svc.state.close();
}

const TMDB_USAGE = 'usage: marquee import-tmdb [--pages N] [--size w342] [--discover key=value ...] [--restart]';
const TMDB_HELP = `${TMDB_USAGE}

Imports movies from TMDB's API v3 with their posters, as the paper built its catalog: the genre list,
then pages of movie/popular (or discover/movie with --discover filters), each poster downloaded at
--size and imported as tmdb-<id> with title, release date, year, genres in TMDB's order, and TMDB's
id, popularity and original language. Rate limits are honoured; a run goes on from the page where
the last one stopped (--restart: from page 1); movies already imported are skipped.

  --pages N             pages to read in this run, 20 movies each (default 1)
  --size S              poster size of TMDB's image base: w185, w342 (default), w500, original
  --discover key=value  a discover/movie filter, e.g. with_genres=27 or primary_release_year=1984 (repeatable)
  --restart             start again from page 1

Credentials: TMDB_API_KEY (v3 key) or TMDB_BEARER_TOKEN (v4 read access token). MARQUEE_TMDB_API_URL
and MARQUEE_TMDB_IMAGE_URL point it elsewhere (default https://api.themoviedb.org/3, https://image.tmdb.org/t/p).`;

async function importTmdbCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const flags = parseCommandOptions(
    args,
    { pages: { type: 'string' }, size: { type: 'string' }, discover: { type: 'string', multiple: true }, restart: { type: 'boolean' } },
    TMDB_USAGE,
    TMDB_HELP,
  );
  if (!flags) return;
  const pages = Number(flags.pages ?? 1);
  if (!Number.isInteger(pages) || pages < 1 || pages > 500) throw new ConfigError(`--pages is a whole number from 1 to 500\n${TMDB_USAGE}`);
  const discover: Record<string, string> = {};
  for (const filter of flags.discover ?? []) {
    const [key, ...rest] = filter.split('=');
    if (!key || rest.length === 0) throw new ConfigError(`--discover takes key=value, not "${filter}"\n${TMDB_USAGE}`);
    discover[key] = rest.join('=');
  }
  const svc = await services(config, log);
  let progress: ReturnType<typeof startProgress> | null = null;
  try {
    const report = await importTmdb(
      {
        apiUrl: process.env.MARQUEE_TMDB_API_URL || 'https://api.themoviedb.org/3',
        imageUrl: process.env.MARQUEE_TMDB_IMAGE_URL || 'https://image.tmdb.org/t/p',
        apiKey: process.env.TMDB_API_KEY || null,
        bearerToken: process.env.TMDB_BEARER_TOKEN || null,
        size: flags.size ?? 'w342',
        pages,
        discover,
        restart: Boolean(flags.restart),
      },
      {
        catalog: svc.catalog,
        dataDir: config.dataDir,
        maxPixels: config.maxPixels,
        maxPosterBytes: config.maxUploadBytes,
        log,
        onProgress(done, total) {
          progress ??= startProgress(log, 'importing TMDB movies', total);
          progress.tick(done);
        },
      },
    );
    (progress as ReturnType<typeof startProgress> | null)?.finish();
    for (const failure of report.failed) process.stderr.write(`tmdb ${failure.tmdb_id} (${failure.title ?? 'untitled'}): ${failure.reason}\n`);
    process.stdout.write(`${JSON.stringify({ ...report, failed: report.failed.length })}\n`);
  } catch (error) {
    if (error instanceof TmdbError) throw new ConfigError(error.message);
    throw error;
  } finally {
    await svc.state.close();
  }
}

async function indexCommand(config: Config, log: Logger): Promise<void> {
  const svc = await services(config, log);
  const onStatus = (status: string) => log.info(status);
  const model = await servedVariant(await ensureBaseModel(config, svc.catalog, svc.models, log, onStatus), svc, onStatus);
  await svc.embeddings.deleteSpace(model);
  rmSync(indexPath(config.dataDir, model), { force: true });
  const embedder = await loadEmbedder(model, svc);
  const embedded = await embedCatalog(model, embedder, svc.embeddings, config.dataDir, config.maxPixels, log);
  const engine = await Engine.load(model, svc, embedder);
  process.stdout.write(`${JSON.stringify({ model_version: model.version, embedded, indexed: engine.searcher.size })}\n`);
  await engine.dispose();
  await svc.state.close();
}

async function manifestCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const [file, size = '96x144'] = args;
  const match = /^(\d+)x(\d+)$/.exec(size);
  if (!file || !match) throw new ConfigError('usage: marquee manifest <file> [WIDTHxHEIGHT]');
  const svc = await services(config, log);
  const posters = await svc.catalog.all();
  if (posters.length === 0) throw new ConfigError('the catalog is empty: run `marquee import <dir>` first');
  const spec = defaultSpec(Number(match[1]), Number(match[2]));
  const progress = startProgress(log, `rendering model inputs at ${size}`, posters.length);
  const paths = await renderInputs(posters, spec, config.dataDir, config.maxPixels, (done) => progress.tick(done));
  progress.finish();
  writeManifest(resolve(file), posters, config.dataDir, { spec, paths });
  process.stdout.write(`${JSON.stringify({ manifest: resolve(file), posters: posters.length, input: { width: spec.width, height: spec.height } })}\n`);
  await svc.state.close();
}

async function modelsCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const [action, dir] = args;
  if (action !== 'add' || !dir) throw new ConfigError('usage: marquee models add <dir>');
  const svc = await services(config, log);
  const sidecar = JSON.parse(readFileSync(join(resolve(dir), 'model.json'), 'utf8')) as { init?: string; mode?: string };
  const kind = sidecar.mode ? 'ft' : 'base';
  const model = await servedVariant(await registerModelDir(resolve(dir), kind, config.dataDir, svc.models), svc, (status) => log.info(status));
  process.stdout.write(
    `${JSON.stringify({ model_version: model.version, variants: model.variants, dims: model.dims, input: { width: model.inputWidth, height: model.inputHeight } })}\n`,
  );
  await svc.state.close();
}

async function trainCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const params = parseRetrainFlags(args);
  const svc = await services(config, log);
  await svc.jobs.failInterrupted();
  await ensureBaseModel(config, svc.catalog, svc.models, log, (status) => log.info(status));
  const runner = new RetrainRunner(svc, svc.jobs, null);
  const job = await runner.start(params);
  const progress = startProgress(log, `training (${job.id})`, 1000);
  const timer = setInterval(async () => {
    const fraction = Number((await svc.jobs.get(job.id))?.progress?.fraction ?? 0);
    progress.tick(Math.round(Math.min(Math.max(fraction, 0), 1) * 1000));
  }, 1000);
  process.once('SIGINT', () => void runner.cancel(job.id).catch(() => undefined));
  await runner.settled();
  clearInterval(timer);
  progress.finish();
  const final = (await svc.jobs.get(job.id))!;
  process.stdout.write(`${JSON.stringify({ job: final.id, state: final.state, model_version: final.modelVersion, error: final.error, metrics: final.metrics })}\n`);
  await svc.state.close();
  if (final.state !== 'succeeded') process.exitCode = final.state === 'rejected' ? 3 : 1;
}

async function openapiCommand(config: Config, log: Logger, file = 'openapi/openapi.json'): Promise<void> {
  const svc = await createServices(config, log, new Metrics(), { inMemory: true });
  const runtime = new Runtime();
  const app = await buildApp(svc, runtime, new RetrainRunner(svc, svc.jobs, runtime));
  await app.ready();
  mkdirSync(dirname(resolve(file)), { recursive: true });
  writeFileSync(file, `${JSON.stringify(app.swagger(), null, 2)}\n`);
  await app.close();
}

/** Commands that work on the data dir; each claims it first (src/state/processes.ts). */
const DATA_DIR_COMMANDS = new Set(['serve', 'import', 'import-tmdb', 'index', 'train', 'manifest', 'models', 'eval', 'figures']);

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (DATA_DIR_COMMANDS.has(command)) claimDataDir(config.dataDir, command);
  switch (command) {
    case 'serve':
      return serve(config, log);
    case 'import':
      return importCommand(config, log, args[0]);
    case 'import-tmdb':
      return importTmdbCommand(config, log, args);
    case 'index':
      return indexCommand(config, log);
    case 'train':
      return trainCommand(config, log, args);
    case 'manifest':
      return manifestCommand(config, log, args);
    case 'models':
      return modelsCommand(config, log, args);
    case 'eval':
      return evalCommand(config, log, args);
    case 'figures':
      return figuresCommand(config, log, args);
    case 'openapi':
      return openapiCommand(config, createLogger('warn'), args[0]);
    case 'ship-embeddings':
      return shipEmbeddingsCommand(config, log, args);
    default:
      throw new ConfigError(`unknown command "${command}"\n\n${HELP}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const expected = error instanceof ConfigError || error instanceof DataDirBusy;
  const message = isStorageFull(error) ? insufficientStorage(error).message : expected ? (error as Error).message : ((error as Error).stack ?? String(error));
  process.stderr.write(`marquee: ${message}\n`);
  process.exit(expected ? 2 : 1);
});
