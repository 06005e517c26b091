import { join, resolve } from 'node:path';
import { ConfigError, type Config } from '../config.js';
import { splitSummary } from '../eval/evaluate.js';
import type { Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { embedCatalog } from '../service/catalog-embedding.js';
import { loadEmbedder } from '../service/engine.js';
import { createServices, type Services } from '../service/startup.js';
import type { Poster } from '../state/catalog.js';
import type { ModelVersion } from '../state/models.js';
import { MAJORITY_SERIES, RECALL_SERIES, writeGenreBars } from './genre-bars.js';
import { CatalogMaps } from './map-cache.js';
import { writeMapFigure } from './map-figure.js';
import { sample, seededRandom } from './random.js';
import { gridRows, writeRetrievalGrid } from './retrieval-grid.js';
import { parseCommandOptions } from '../command-options.js';

const DEFAULT_QUERIES = 6;
const DEFAULT_SEED = 1;

export const FIGURES_USAGE = 'usage: marquee figures [--version V] [--out DIR] [--queries N | --ids id,id] [--seed S]';

const FIGURES_HELP = `${FIGURES_USAGE}

Draws a model version's figures (default: the active one) as PNG files in DIR (default docs/evaluation/figures):
  embedding-map.png       UMAP of the whole catalog, coloured by single genre (coordinates cached in the
                          data dir under maps/, and shared with the demo page)
  retrieval-grid.png      test posters and their 4 nearest train posters (exact search, never themselves)
  recall-per-genre.png    Recall@1/3/8 per single genre, test vs train, as in marquee eval
  majority-per-genre.png  majority@1/3/5/8 per single genre

  --version V     model version to draw
  --out DIR       where to write the PNG files
  --queries N     how many test posters the retrieval grid shows, drawn at random (default ${DEFAULT_QUERIES})
  --ids a,b       these posters as the grid's queries instead
  --seed S        seed of the random draw (default ${DEFAULT_SEED}); the map has its own fixed seed`;

export const FIGURE_FILES = {
  map: 'embedding-map.png',
  grid: 'retrieval-grid.png',
  recall: 'recall-per-genre.png',
  majority: 'majority-per-genre.png',
} as const;

function positiveInt(raw: string | undefined, name: string, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`--${name} must be an integer ≥ ${min}, got "${raw}"\n${FIGURES_USAGE}`);
  return value;
}

/** `marquee figures`: the embedding map, a retrieval grid and the per-genre bar charts of a model version. */
export async function figuresCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const values = parseCommandOptions(
    args,
    {
      version: { type: 'string' },
      out: { type: 'string' },
      queries: { type: 'string' },
      ids: { type: 'string' },
      seed: { type: 'string' },
    },
    FIGURES_USAGE,
    FIGURES_HELP,
  );
  if (!values) return;
  if (values.queries !== undefined && values.ids !== undefined) throw new ConfigError(`--queries and --ids exclude each other\n${FIGURES_USAGE}`);
  const count = positiveInt(values.queries, 'queries', DEFAULT_QUERIES, 1);
  const seed = positiveInt(values.seed, 'seed', DEFAULT_SEED, 0);
  const out = resolve(values.out ?? join('docs', 'evaluation', 'figures'));

  const svc = await createServices(config, log, new Metrics());
  try {
    const model = values.version ? (await svc.models.get(values.version)) : (await svc.models.active());
    if (!model) {
      throw new ConfigError(values.version ? `no model version "${values.version}"` : 'no active model: run `marquee serve` or `marquee index` first');
    }
    const posters = await svc.catalog.all();
    if (posters.length === 0) throw new ConfigError('the catalog is empty: import it first (`marquee import <dir>` or `marquee serve`)');
    const gallery = posters.filter((p) => p.split === 'train');
    const tests = posters.filter((p) => p.split === 'test');
    if (gallery.length === 0 || tests.length === 0) throw new ConfigError('the catalog needs train and test posters (the split column of movies.csv)');
    const queries = values.ids ? (await chosen(svc, values.ids)) : sample(tests, count, seededRandom(seed));
    if (queries.length === 0) throw new ConfigError(`--ids names no poster\n${FIGURES_USAGE}`);

    const timings: Record<string, number> = {};
    const timed = async <T>(step: string, work: () => Promise<T> | T): Promise<T> => {
      const started = performance.now();
      const result = await work();
      timings[step] = Math.round(performance.now() - started);
      return result;
    };
    await timed('embeddings', () => embedMissing(svc, model));
    const map = await timed('map', () => new CatalogMaps({ ...svc, dataDir: config.dataDir }).get(model));
    await timed('map figure', () => writeMapFigure(map, join(out, FIGURE_FILES.map)));

    const set = await svc.embeddings.load(model, model.dims);
    const source = values.ids ? 'Chosen posters' : `${queries.length} test posters drawn at random (seed ${seed})`;
    await timed('retrieval grid', () =>
      writeRetrievalGrid(
        gridRows(set, model.version, queries, gallery),
        config.dataDir,
        { model: model.version, queries: source, gallery: `the ${gallery.length.toLocaleString('en-US')} train posters` },
        join(out, FIGURE_FILES.grid),
      ),
    );

    const summary = await splitSummary(svc, model, 'test');
    const subtitle = `${summary.queries} test posters queried against ${gallery.length.toLocaleString('en-US')} train posters, exact search, never themselves (marquee eval's per-genre table). Genres with few queries are noisy.`;
    await timed('bar charts', async () => {
      await writeGenreBars(summary, RECALL_SERIES, { title: `Recall@k per single genre, ${model.version}`, subtitle }, join(out, FIGURE_FILES.recall));
      await writeGenreBars(summary, MAJORITY_SERIES, { title: `majority@k per single genre, ${model.version}`, subtitle }, join(out, FIGURE_FILES.majority));
    });

    const files = Object.fromEntries(Object.entries(FIGURE_FILES).map(([name, file]) => [name, join(out, file)]));
    process.stdout.write(`${JSON.stringify({ model_version: model.version, files, map: { posters: map.points.length, cached: map.cached }, queries: queries.map((q) => q.id), timings_ms: timings })}\n`);
  } finally {
    await svc.state.close();
  }
}

async function chosen(svc: Services, ids: string): Promise<Poster[]> {
  const wanted = ids
    .split(',')
    .map((id) => id.trim())
    .filter(Boolean);
  return Promise.all(
    wanted.map(async (id) => {
      const poster = await svc.catalog.get(id);
      if (!poster) throw new ConfigError(`--ids: no poster "${id}" in the catalog`);
      return poster;
    }),
  );
}

/** Embeds the posters the version has no embedding for yet (a catalog imported after the last index). */
async function embedMissing(svc: Services, model: ModelVersion): Promise<void> {
  if ((await svc.embeddings.missing(model)).length === 0) return;
  const embedder = await loadEmbedder(model, svc);
  try {
    await embedCatalog(model, embedder, svc.embeddings, svc.config.dataDir, svc.config.maxPixels, svc.log);
  } finally {
    await embedder.release();
  }
}
