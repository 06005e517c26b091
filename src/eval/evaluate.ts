import { readFile } from 'node:fs/promises';
import { ConfigError } from '../config.js';
import type { Embedder } from '../model/embedder.js';
import { preprocess } from '../model/preprocess.js';
import { classifyGenres, parseGenreHead } from '../search/genre-head.js';
import { votedGenres, voteGenres, type Voter } from '../search/genre-vote.js';
import { Searcher } from '../search/searcher.js';
import { VectorIndex } from '../search/vector-index.js';
import { embedCatalog } from '../service/catalog-embedding.js';
import { indexPath, loadEmbedder } from '../service/engine.js';
import type { Services } from '../service/startup.js';
import type { Poster, Split } from '../state/catalog.js';
import type { EmbeddingSet } from '../state/embeddings.js';
import type { ModelVersion } from '../state/models.js';
import { HISTOGRAM_DIMS, HISTOGRAM_SIZE, HSV_BINS, HistogramCache, histogramsOf } from './colour-histogram.js';
import { diversified, meanPairwiseSimilarity } from './diversity.js';
import { exactKnn, keyedVectors, similaritySpread, storedVectors, type KeyedVectors, type Neighbours, type StoredVectors } from './knn.js';
import { evaluateQueries, genreCounts, MAJORITY_KS, RANKING_KS, RECALL_KS, VOTE_K, type MatchRule, type QueryOutcome, type Summary } from './metrics.js';
import { classifierFigures, fitLogisticHead, multiHot, predictedBy, chooseThresholds, type ClassifierFigures, type GenreScores } from './genre-classifier.js';
import { loadQueryCsv, posterItem, type QueryItem, type QuerySet, type SkippedQuery } from './query-set.js';
import { pairedDifference, seriesFigures, seriesOf, type SeriesFigures } from './series.js';

export type GalleryChoice = 'train' | 'train+val' | 'all';

export interface EvaluateOptions {
  /** Default: the active model version. */
  version?: string;
  /** Default: `train`, or `all` (the whole catalog) for an external query set. */
  gallery?: GalleryChoice;
  /** Search the served usearch index instead of exact search, and measure its recall against exact. */
  index?: boolean;
  /** Also run the paper's protocol: every poster against all of them, itself included, lenient match. */
  paperProtocol?: boolean;
  /** An external query set (movies.csv format) instead of the catalog's test split. */
  queriesCsv?: string;
  imagesDir?: string;
}

export type SystemId = 'model' | 'paper_protocol' | 'majority_genre' | 'hsv_histogram' | 'base_model';

export interface SystemResult {
  id: SystemId;
  label: string;
  /** How queries met the gallery, in words. */
  protocol: string;
  gallery: number;
  summary: Summary;
  /** Median gap between the 1st and the 100th neighbour's similarity (embedding systems only). */
  similaritySpread?: number | null;
  /** Same-series posters among the nearest (systems that search the gallery). */
  series?: SeriesFigures;
}

/** The genre answer as a classifier: a model's head, a vote, a baseline's head, prevalence. */
export interface GenreSystemResult {
  id: 'model_head' | 'model_vote' | 'hsv_head' | 'hsv_vote' | 'prevalence';
  label: string;
  figures: ClassifierFigures;
}

/** The model's answers of VOTE_K at one `diversity`: how alike they are, and their genre vote as a classifier. */
export interface DiversityResult {
  diversity: number;
  meanPairwiseSimilarity: number | null;
  vote: ClassifierFigures;
}

/** The settings of `diversity` measured beside 0 (the answer without it). */
export const DIVERSITIES = [0, 0.25, 0.5, 0.75] as const;

export interface Evaluation {
  modelVersion: string;
  baseModelVersion: string | null;
  search: 'exact' | 'index';
  queries: {
    source: string;
    count: number;
    skipped: SkippedQuery[];
    /** Queries that are pictures already in the catalog (never matched with themselves). */
    inCatalog: number;
    /** Genres of the queries that no gallery poster has, with how many queries carry them. */
    genresMissingFromGallery: Record<string, number>;
  };
  gallery: { source: string; count: number };
  systems: SystemResult[];
  /** The genre answer of each system as a multi-label classifier of the queries. */
  genreSystems: GenreSystemResult[];
  /** The model's exact answers re-ranked as `diversity` re-ranks them (empty with --index). */
  diversity: DiversityResult[];
  /** The model's same-series figure at 8 minus the histogram's, on the same queries: mean and 95% bootstrap interval. */
  seriesVsHistogram: { mean: number; low: number; high: number } | null;
  /** Share of the exact k nearest that the served index returns, per k (with --index). */
  indexRecallVsExact: Record<string, number> | null;
  notes: string[];
  timingsMs: Record<string, number>;
}

const GALLERY_SPLITS: Record<Exclude<GalleryChoice, 'all'>, Split[]> = { train: ['train'], 'train+val': ['train', 'val'] };
const QUERY_SPLIT: Split = 'test';
/** The deepest retrieval figure (Recall@8): what the index's recall against exact search is reported at. */
const RETRIEVAL_K = Math.max(...RECALL_KS, ...MAJORITY_KS);
const MAX_K = Math.max(RETRIEVAL_K, ...RANKING_KS);
const EMBED_BATCH = 16;

/** The untrained base model: a random-init export registered by export-base (see model/registration.ts). */
export function findBaseModel(models: ModelVersion[]): ModelVersion | null {
  const bases = models.filter((m) => m.version.startsWith('base-') && m.source.init === 'random');
  return bases.at(-1) ?? null;
}

/**
 * Evaluates a model version on the catalog's fixed split (or an external query set) with exact
 * search, beside the baselines, the paper's protocol and the served index when asked.
 */
export async function evaluate(svc: Services, options: EvaluateOptions = {}): Promise<Evaluation> {
  const { config, catalog, models, log } = svc;
  const timings: Record<string, number> = {};
  const timed = async <T>(step: string, work: () => Promise<T> | T): Promise<T> => {
    const started = performance.now();
    const result = await work();
    timings[step] = Math.round(performance.now() - started);
    log.info({ step, ms: timings[step] }, 'evaluation step done');
    return result;
  };

  const model = options.version ? (await models.get(options.version)) : (await models.active());
  if (!model) {
    throw new ConfigError(
      options.version ? `no model version "${options.version}"` : 'no active model: run `marquee serve` or `marquee index` first',
    );
  }
  const posters = await catalog.all();
  if (posters.length === 0) throw new ConfigError('the catalog is empty: import it first (`marquee import <dir>` or `marquee serve`)');

  const galleryChoice = options.gallery ?? (options.queriesCsv ? 'all' : 'train');
  const gallery = galleryChoice === 'all' ? posters : posters.filter((p) => p.split && GALLERY_SPLITS[galleryChoice].includes(p.split));
  if (gallery.length === 0) throw new ConfigError(`the gallery (${galleryChoice}) is empty: the catalog has no posters in that split`);

  const querySet: QuerySet = options.queriesCsv
    ? await timed('load queries', () => loadQueryCsv(options.queriesCsv!, options.imagesDir, catalog, config.maxPixels))
    : splitQueries(posters, config.dataDir);
  const queries = querySet.items;
  if (queries.length === 0) throw new ConfigError(`the catalog has no ${QUERY_SPLIT} posters to query with`);

  const notes: string[] = [];
  const systems: SystemResult[] = [];
  const vectors = new ModelVectors(svc);
  const labeller = new Labeller(gallery, queries);
  const honest = 'honest: exact search, query never in the gallery';
  const genres = new GenreTruth(gallery, queries, posters.filter((p) => p.split === 'val'));
  const series = new SeriesMeasure(posters, gallery, queries);
  const genreSystems: GenreSystemResult[] = [];
  const diversity: DiversityResult[] = [];
  const addGenres = (id: GenreSystemResult['id'], label: string, scores: GenreScores) =>
    genreSystems.push({ id, label, figures: classifierFigures(scores, genres.queryTruth) });
  const add = (id: SystemId, label: string, protocol: string, summary: Summary, size = gallery.length, neighbours?: Neighbours, galleryKeys?: Int32Array) =>
    systems.push({
      id, label, protocol, gallery: size, summary,
      ...(neighbours ? { similaritySpread: similaritySpread(neighbours) } : {}),
      ...(neighbours && galleryKeys ? { series: series.of(neighbours, galleryKeys) } : {}),
    }); // prettier-ignore
  let indexRecallVsExact: Record<string, number> | null = null;
  let base: ModelVersion | null = null;
  try {
    const modelVectors = await timed('embeddings', () => vectors.of(model, gallery, querySet));
    const exact = await timed('exact search', () => exactKnn(modelVectors.queries, modelVectors.gallery, labeller.depth));
    if (options.index) {
      const served = await timed('index search', () => indexNeighbours(svc, model, modelVectors.queries, gallery, labeller));
      indexRecallVsExact = recallVsExact(served, exact, modelVectors.gallery.keys);
      const summary = evaluateQueries(labeller.outcomesFromVoters(served.voters));
      add('model', `${model.version} ${model.precision} (served index)`, 'honest: the served usearch index, query never in the gallery', summary);
    } else {
      add('model', `${model.version} ${model.precision} (exact)`, honest, evaluateQueries(labeller.outcomes(exact)), gallery.length, exact, modelVectors.gallery.keys);
    }
    const head = parseGenreHead(model.source.genre_head, model.dims);
    if (head) addGenres('model_head', `${model.version}: its genre head`, genres.fromHead(head, modelVectors.queries));
    else notes.push(`${model.version} has no genre head: the genre endpoint serves its vote.`);
    addGenres('model_vote', `${model.version}: vote of ${VOTE_K} nearest`, genres.fromVote(labeller.outcomes(exact)));
    if (!options.index) {
      for (const d of DIVERSITIES) {
        const picked = diversified(exact, modelVectors.gallery, VOTE_K, d);
        diversity.push({
          diversity: d,
          meanPairwiseSimilarity: meanPairwiseSimilarity(picked, modelVectors.gallery),
          vote: classifierFigures(genres.fromVote(labeller.outcomes(picked)), genres.queryTruth),
        });
      }
    }

    if (options.paperProtocol) {
      await timed('paper protocol', async () => {
        const all = await vectors.catalog(model, posters);
        const neighbours = exactKnn(all, all, MAX_K, { includeSelf: true });
        const everyone = new Labeller(posters, posters.map((p) => posterItem(p, config.dataDir)));
        const protocol = 'every poster against all of them, itself included; lenient: any shared genre';
        add('paper_protocol', `${model.version}, paper's protocol`, protocol, everyone.summary(neighbours, 'any'), posters.length);
      });
    }

    const majority = labeller.majorityGenre();
    const constant = "constant answer: the gallery's most common single genre";
    add('majority_genre', `always "${majority}"`, constant, evaluateQueries(labeller.constantOutcomes(majority)));
    addGenres('prevalence', "genre prevalence (each genre's share of the gallery)", genres.fromPrevalence());

    await timed('colour histograms', async () => {
      const cache = HistogramCache.open(config.dataDir);
      const features = async (items: { path: string; pixelSha256: string }[], keys: number[]) =>
        keyedVectors(keys, await histogramsOf(items, cache, config.maxPixels), HISTOGRAM_DIMS);
      const galleryFeatures = await features(gallery.map((p) => posterItem(p, config.dataDir)), gallery.map((p) => p.key));
      const queryFeatures = await features(queries, queries.map((q) => q.key));
      const neighbours = exactKnn(queryFeatures, galleryFeatures, labeller.depth);
      const label = `HSV histogram ${HSV_BINS.join('×')}, square-root, ${HISTOGRAM_SIZE.width}×${HISTOGRAM_SIZE.height}, cosine`;
      add('hsv_histogram', label, honest, evaluateQueries(labeller.outcomes(neighbours)), gallery.length, neighbours, galleryFeatures.keys);
      const valPosters = genres.val;
      const valFeatures = await features(valPosters.map((p) => posterItem(p, config.dataDir)), valPosters.map((p) => p.key));
      const histogramHead = await timed('histogram genre head', () =>
        fitLogisticHead({ x: galleryFeatures.data, y: genres.galleryTruth }, { x: valFeatures.data, y: genres.valTruth }, HISTOGRAM_DIMS, genres.classes),
      );
      if (histogramHead) {
        addGenres('hsv_head', `HSV histogram: a genre head trained on it (L2 ${histogramHead.l2})`, histogramHead.predict(queryFeatures.data, queries.length));
      } else notes.push('No genre has both a positive and a negative val poster: the histogram has no genre head to compare.');
      addGenres('hsv_vote', `HSV histogram: vote of ${VOTE_K} nearest`, genres.fromVote(labeller.outcomes(neighbours)));
    });

    base = findBaseModel(await models.list());
    if (!base) notes.push('No untrained base model (export-base, random initialisation) is registered: its baseline is left out.');
    else if (base.version === model.version) {
      notes.push(`The evaluated version ${model.version} is itself the untrained base model: its row is the base-model baseline.`);
    } else {
      const untrained = base;
      await timed('base model', async () => {
        const baseVectors = await vectors.of(untrained, gallery, querySet);
        const neighbours = exactKnn(baseVectors.queries, baseVectors.gallery, labeller.depth);
        add('base_model', `untrained base ${untrained.version}`, honest, evaluateQueries(labeller.outcomes(neighbours)), gallery.length, neighbours, baseVectors.gallery.keys);
      });
    }
  } finally {
    await vectors.release();
  }

  return {
    modelVersion: model.version,
    baseModelVersion: base?.version ?? null,
    search: options.index ? 'index' : 'exact',
    queries: {
      source: querySet.source,
      count: queries.length,
      skipped: querySet.skipped,
      inCatalog: queries.filter((q) => q.key >= 0).length,
      genresMissingFromGallery: labeller.missingGenres(),
    },
    gallery: { source: galleryChoice === 'all' ? 'catalog:all' : `split:${galleryChoice}`, count: gallery.length },
    systems,
    genreSystems,
    diversity,
    seriesVsHistogram: series.compare(systems.find((s) => s.id === 'model')?.series, systems.find((s) => s.id === 'hsv_histogram')?.series),
    indexRecallVsExact,
    notes,
    timingsMs: timings,
  };
}

/**
 * Summary of a model version with one split's posters as queries against the `train` gallery, exact
 * search, from stored embeddings only (every poster must already be embedded with the version).
 * The retrain gate compares versions with it on `val`, so that `test` stays unseen until reporting.
 */
export async function splitSummary(
  svc: Pick<Services, 'catalog' | 'embeddings'>,
  model: ModelVersion,
  split: Split,
  galleryChoice: Exclude<GalleryChoice, 'all'> = 'train',
): Promise<Summary> {
  const posters = await svc.catalog.all();
  const gallery = posters.filter((p) => p.split && GALLERY_SPLITS[galleryChoice].includes(p.split));
  const queries = posters.filter((p) => p.split === split);
  if (gallery.length === 0 || queries.length === 0) throw new Error(`no ${split} queries or no ${galleryChoice} gallery in the catalog`);
  const stored = storedVectors(await svc.embeddings.load(model, model.dims));
  const labeller = new Labeller(gallery, queries.map((p) => posterItem(p, '')));
  const neighbours = exactKnn(stored.select(queries, model.version), stored.select(gallery, model.version), labeller.depth);
  return evaluateQueries(labeller.outcomes(neighbours));
}

/** The gate's figure: `val` queries against the `train` gallery. */
export function validationSummary(svc: Pick<Services, 'catalog' | 'embeddings'>, model: ModelVersion): Promise<Summary> {
  return splitSummary(svc, model, 'val');
}

function splitQueries(posters: Poster[], dataDir: string): QuerySet {
  const items = posters.filter((p) => p.split === QUERY_SPLIT).map((p) => posterItem(p, dataDir));
  return { source: `split:${QUERY_SPLIT}`, external: false, items, skipped: [] };
}

/** Turns neighbour rows into labelled neighbour lists, with each query's R and the depth MAP@R needs. */
class Labeller {
  private readonly counts: Map<string, number>;
  private readonly galleryKeys: Set<number>;
  private readonly voters: Voter[];
  /** How many neighbours each query needs: the largest k, or R for MAP@R when larger. */
  readonly depth: number;

  constructor(
    private readonly gallery: Poster[],
    readonly queries: QueryItem[],
  ) {
    this.counts = genreCounts(gallery);
    this.galleryKeys = new Set(gallery.map((p) => p.key));
    this.voters = gallery.map((p) => ({ genres: p.genres, singleGenre: p.singleGenre, similarity: 0 }));
    this.depth = Math.min(gallery.length, Math.max(MAX_K, ...queries.map((q) => this.relevant(q))));
  }

  relevant(query: QueryItem): number {
    const count = this.counts.get(query.singleGenre) ?? 0;
    return this.galleryKeys.has(query.key) ? count - 1 : count;
  }

  private labels(query: QueryItem): Omit<QueryOutcome, 'neighbours'> {
    return { singleGenre: query.singleGenre, genres: query.genres, relevant: this.relevant(query) };
  }

  /** How many neighbours this query needs. */
  need(query: QueryItem): number {
    return Math.min(this.gallery.length, Math.max(MAX_K, this.relevant(query)));
  }

  outcomes(neighbours: Neighbours): QueryOutcome[] {
    return this.queries.map((query, q) => {
      const list: Voter[] = [];
      const need = Math.min(this.need(query), neighbours.k);
      for (let i = 0; i < need; i++) {
        const row = neighbours.indices[q * neighbours.k + i]!;
        if (row < 0) break;
        list.push({ ...this.voters[row]!, similarity: neighbours.similarities[q * neighbours.k + i]! });
      }
      return { ...this.labels(query), neighbours: list };
    });
  }

  outcomesFromVoters(lists: Voter[][]): QueryOutcome[] {
    return this.queries.map((query, q) => ({ ...this.labels(query), neighbours: lists[q]! }));
  }

  summary(neighbours: Neighbours, rule: MatchRule): Summary {
    return evaluateQueries(this.outcomes(neighbours), rule);
  }

  /** The most common single genre of the gallery (ties: alphabetical). */
  majorityGenre(): string {
    return [...this.counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]![0];
  }

  /**
   * The majority baseline as a retrieval: every query gets the gallery's posters of that genre,
   * each voting for that genre alone, so each metric reduces to "is the query's genre that genre".
   */
  constantOutcomes(genre: string): QueryOutcome[] {
    const list: Voter[] = Array.from({ length: this.counts.get(genre) ?? 0 }, () => ({ genres: [genre], singleGenre: genre, similarity: 0 }));
    return this.queries.map((query) => ({ ...this.labels(query), neighbours: list }));
  }

  missingGenres(): Record<string, number> {
    const known = new Set(this.gallery.flatMap((p) => p.genres));
    const missing: Record<string, number> = {};
    for (const query of this.queries) for (const genre of query.genres) if (!known.has(genre)) missing[genre] = (missing[genre] ?? 0) + 1;
    return missing;
  }
}

/** The genres of gallery, queries and val posters as multi-hot rows, and each way of scoring the queries' genres. */
class GenreTruth {
  readonly classes: string[];
  readonly queryTruth: boolean[][];
  readonly galleryTruth: boolean[][];
  readonly valTruth: boolean[][];

  constructor(
    private readonly gallery: Poster[],
    queries: QueryItem[],
    readonly val: Poster[],
  ) {
    this.classes = [...new Set(gallery.flatMap((p) => p.genres))].sort();
    this.queryTruth = multiHot(queries.map((q) => q.genres), this.classes);
    this.galleryTruth = multiHot(gallery.map((p) => p.genres), this.classes);
    this.valTruth = multiHot(val.map((p) => p.genres), this.classes);
  }

  /** The model's own head, as the genre endpoint applies it. */
  fromHead(head: NonNullable<ReturnType<typeof parseGenreHead>>, queries: KeyedVectors): GenreScores {
    const probabilities: number[][] = [];
    const predicted: boolean[][] = [];
    for (let q = 0; q < queries.keys.length; q++) {
      const answer = classifyGenres(head, queries.data.subarray(q * queries.dims, (q + 1) * queries.dims));
      const byGenre = new Map(answer.probabilities.map((p) => [p.genre, p]));
      probabilities.push(this.classes.map((c) => byGenre.get(c)?.probability ?? 0));
      predicted.push(this.classes.map((c) => byGenre.get(c)?.predicted ?? false));
    }
    return { classes: this.classes, probabilities, predicted };
  }

  /** The vote of the VOTE_K nearest: each genre's share as its score, the endpoint's rule for the predicted set. */
  fromVote(outcomes: QueryOutcome[]): GenreScores {
    const votes = outcomes.map((o) => voteGenres(o.neighbours.slice(0, VOTE_K), this.classes));
    return {
      classes: this.classes,
      probabilities: votes.map((v) => {
        const byGenre = new Map(v.scores.map((s) => [s.genre, s.score]));
        return this.classes.map((c) => byGenre.get(c) ?? 0);
      }),
      predicted: votes.map((v) => {
        const chosen = new Set(votedGenres(v));
        return this.classes.map((c) => chosen.has(c));
      }),
    };
  }

  /** Every query gets each genre's share of the gallery; the predicted set by thresholds chosen on val. */
  fromPrevalence(): GenreScores {
    const prevalence = this.classes.map((_, c) => this.galleryTruth.filter((t) => t[c]).length / this.gallery.length);
    const thresholds = chooseThresholds(this.valTruth.map(() => prevalence), this.valTruth);
    const probabilities = this.queryTruth.map(() => prevalence);
    return { classes: this.classes, probabilities, predicted: predictedBy(probabilities, thresholds) };
  }
}

/** The same-series measure (src/eval/series.ts) of a system's neighbours. */
class SeriesMeasure {
  private readonly series: Map<string, number[]>;
  private readonly galleryKeys: Set<number>;

  constructor(
    posters: Poster[],
    gallery: Poster[],
    private readonly queries: QueryItem[],
  ) {
    this.series = seriesOf(posters.map((p) => ({ key: p.key, title: p.title })));
    this.galleryKeys = new Set(gallery.map((p) => p.key));
  }

  of(neighbours: Neighbours, galleryKeys: Int32Array): SeriesFigures {
    const nearest = this.queries.map((_, q) => {
      const keys: number[] = [];
      for (let i = 0; i < Math.min(8, neighbours.k); i++) {
        const row = neighbours.indices[q * neighbours.k + i]!;
        if (row >= 0) keys.push(galleryKeys[row]!);
      }
      return keys;
    });
    return seriesFigures(this.queries.map((q) => q.key), nearest, this.galleryKeys, this.series);
  }

  compare(a: SeriesFigures | undefined, b: SeriesFigures | undefined): { mean: number; low: number; high: number } | null {
    return a && b ? pairedDifference(a.perQuery, b.perQuery) : null;
  }
}

/** Embeddings of gallery and queries for a model version: stored ones for catalog posters, fresh ones for external pictures. */
class ModelVectors {
  private readonly embedders = new Map<string, Embedder>();
  private readonly sets = new Map<string, { set: EmbeddingSet; stored: StoredVectors }>();

  constructor(private readonly svc: Services) {}

  private async embedder(model: ModelVersion): Promise<Embedder> {
    let embedder = this.embedders.get(model.version);
    if (!embedder) {
      embedder = await loadEmbedder(model, this.svc);
      this.embedders.set(model.version, embedder);
    }
    return embedder;
  }

  /** Stored embeddings of the given catalog posters; embeds the catalog's missing ones first. */
  async catalog(model: ModelVersion, posters: { key: number; id: string }[]): Promise<KeyedVectors> {
    return (await this.stored(model)).stored.select(posters, model.version);
  }

  /** The version's stored embeddings, loaded once; the catalog's missing ones are embedded first. */
  async stored(model: ModelVersion): Promise<{ set: EmbeddingSet; stored: StoredVectors }> {
    const cached = this.sets.get(model.version);
    if (cached) return cached;
    const { embeddings, config, log } = this.svc;
    if ((await embeddings.missing(model)).length > 0) {
      await embedCatalog(model, await this.embedder(model), embeddings, config.dataDir, config.maxPixels, log);
    }
    const set = await embeddings.load(model, model.dims);
    const loaded = { set, stored: storedVectors(set) };
    this.sets.set(model.version, loaded);
    return loaded;
  }

  async of(model: ModelVersion, gallery: Poster[], querySet: QuerySet): Promise<{ gallery: KeyedVectors; queries: KeyedVectors }> {
    const galleryVectors = await this.catalog(model, gallery);
    if (!querySet.external) return { gallery: galleryVectors, queries: await this.catalog(model, querySet.items) };
    const embedder = await this.embedder(model);
    const data = new Float32Array(querySet.items.length * model.dims);
    for (let start = 0; start < querySet.items.length; start += EMBED_BATCH) {
      const batch = querySet.items.slice(start, start + EMBED_BATCH);
      const tensors = await Promise.all(
        batch.map(async (q) => (await preprocess(await readFile(q.path), model.preprocessing, this.svc.config.maxPixels)).tensor),
      );
      (await embedder.embed(tensors)).forEach((vector, i) => data.set(vector, (start + i) * model.dims));
    }
    return { gallery: galleryVectors, queries: keyedVectors(querySet.items.map((q) => q.key), data, model.dims) };
  }

  async release(): Promise<void> {
    for (const embedder of this.embedders.values()) await embedder.release();
    this.embedders.clear();
  }
}

interface ServedNeighbours {
  voters: Voter[][];
  keys: number[][];
}

/** Searches the served usearch index (the whole catalog), leaving out posters outside the gallery and the query itself. */
async function indexNeighbours(
  svc: Services,
  model: ModelVersion,
  queries: KeyedVectors,
  gallery: Poster[],
  labeller: Labeller,
): Promise<ServedNeighbours> {
  const index = VectorIndex.open(indexPath(svc.config.dataDir, model), (await svc.embeddings.snapshot(model, model.dims)).source, {
    scalar: svc.config.indexScalar,
    expansion: svc.config.indexExpansion,
    onRebuild: (reason) => svc.log.info({ version: model.version, reason }, 'building the vector index'),
  });
  const posters = await svc.catalog.all();
  const searcher = new Searcher(index, (key) => svc.embeddings.get(model, key), posters, (keys) => svc.catalog.getMany(keys));
  const inGallery = new Set(gallery.map((p) => p.key));
  const exclude = new Set(posters.filter((p) => !inGallery.has(p.key)).map((p) => p.key));
  const voters: Voter[][] = [];
  const keys: number[][] = [];
  for (let q = 0; q < queries.keys.length; q++) {
    const self = queries.keys[q]!;
    const added = self >= 0 && !exclude.has(self);
    if (added) exclude.add(self);
    const vector = queries.data.subarray(q * queries.dims, (q + 1) * queries.dims);
    const hits = await searcher.search(vector, labeller.need(labeller.queries[q]!), {}, exclude);
    if (added) exclude.delete(self);
    voters.push(hits.map((h) => ({ genres: h.poster.genres, singleGenre: h.poster.singleGenre, similarity: h.similarity })));
    keys.push(hits.map((h) => h.poster.key));
  }
  return { voters, keys };
}

/** Mean share of the exact top k that the index also returns in its top k. */
function recallVsExact(served: ServedNeighbours, exact: Neighbours, galleryKeys: Int32Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of [1, RETRIEVAL_K]) {
    let sum = 0;
    for (let q = 0; q < served.keys.length; q++) {
      const truth = new Set<number>();
      for (let i = 0; i < Math.min(k, exact.k); i++) {
        const row = exact.indices[q * exact.k + i]!;
        if (row >= 0) truth.add(galleryKeys[row]!);
      }
      const found = served.keys[q]!.slice(0, k).filter((key) => truth.has(key)).length;
      sum += truth.size === 0 ? 1 : found / truth.size;
    }
    out[`@${k}`] = sum / served.keys.length;
  }
  return out;
}
