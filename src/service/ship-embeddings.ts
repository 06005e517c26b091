import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { importCatalog } from '../catalog/importer.js';
import { parseCommandOptions } from '../command-options.js';
import { CATALOG_EMBEDDINGS_FILE, writeCatalogEmbeddings, type CatalogEmbeddingsHeader } from '../model/catalog-embeddings-file.js';
import { registerModelDir } from '../model/registration.js';
import { startProgress } from '../progress.js';
import { embedCatalog } from './catalog-embedding.js';
import { loadEmbedder } from './engine.js';
import { createServices } from './startup.js';

const USAGE = 'usage: marquee ship-embeddings [--model DIR] [--catalog DIR] [--out FILE]';

const HELP = `${USAGE}

Writes the catalog embeddings shipped beside a model (${CATALOG_EMBEDDINGS_FILE}), which a first start
takes instead of embedding every poster: the catalog imported and embedded by the model as a start
does (on the CPU, in a scratch data dir that is removed after), each vector keyed by its picture's
pixel hash. Run it again whenever the model or the catalog changes; a start refuses a file made for
another model file, and checks a sample of the file against the model before it takes any of it.

  --model DIR     the model directory (model.onnx + model.json; default: MARQUEE_DEFAULT_MODEL, models/default)
  --catalog DIR   the catalog (default: MARQUEE_CATALOG, ../shared/posters)
  --out FILE      where to write (default: DIR/${CATALOG_EMBEDDINGS_FILE})`;

/** `marquee ship-embeddings`: embeds a catalog with a model dir's model file and writes the shipped file beside it. */
export async function shipEmbeddingsCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const flags = parseCommandOptions(args, { model: { type: 'string' }, catalog: { type: 'string' }, out: { type: 'string' } }, USAGE, HELP);
  if (!flags) return;
  const modelDir = flags.model ? resolve(flags.model) : config.defaultModelDir;
  const catalogDir = flags.catalog ? resolve(flags.catalog) : config.catalogDir;
  if (!modelDir || !existsSync(join(modelDir, 'model.onnx'))) throw new ConfigError(`no model.onnx in ${modelDir ?? '(no model dir)'}\n${USAGE}`);
  if (!catalogDir || !existsSync(join(catalogDir, 'movies.csv'))) throw new ConfigError(`no movies.csv in ${catalogDir ?? '(no catalog)'}\n${USAGE}`);
  const out = flags.out ? resolve(flags.out) : join(modelDir, CATALOG_EMBEDDINGS_FILE);
  const scratch = mkdtempSync(join(tmpdir(), 'marquee-ship-'));
  const svc = await createServices({ ...config, dataDir: scratch, device: 'cpu' }, log, new Metrics());
  try {
    let progress: ReturnType<typeof startProgress> | null = null;
    const report = await importCatalog(catalogDir, {
      catalog: svc.catalog,
      dataDir: scratch,
      maxPixels: config.maxPixels,
      onProgress(done, total) {
        progress ??= startProgress(log, 'importing posters', total);
        progress.tick(done);
      },
    });
    (progress as ReturnType<typeof startProgress> | null)?.finish();
    if (report.skipped.length > 0) log.warn({ skipped: report.skipped.length, first: report.skipped[0] }, 'catalog rows skipped');
    const model = await registerModelDir(modelDir, 'ship', scratch, svc.models);
    const embedder = await loadEmbedder(model, svc);
    try {
      await embedCatalog(model, embedder, svc.embeddings, scratch, config.maxPixels, log);
    } finally {
      await embedder.release();
    }
    const vectors = new Map<string, Float32Array>();
    const stored = await svc.embeddings.load(model, model.dims);
    const pixelHashes = new Map((await svc.catalog.all()).map((poster) => [poster.key, poster.pixelSha256]));
    stored.keys.forEach((key, i) => vectors.set(pixelHashes.get(Number(key))!, stored.vectors.subarray(i * model.dims, (i + 1) * model.dims)));
    const header: CatalogEmbeddingsHeader = writeCatalogEmbeddings(out, {
      model_sha256: model.fileSha256,
      precision: model.precision,
      dims: model.dims,
      catalog: { posters: pixelHashes.size, movies_csv_sha256: createHash('sha256').update(readFileSync(join(catalogDir, 'movies.csv'))).digest('hex') },
    }, vectors);
    const { payload_sha256: _payload, ...summary } = header;
    process.stdout.write(`${JSON.stringify({ file: out, ...summary, bytes: readFileSync(out).length })}\n`);
  } finally {
    await svc.state.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}
