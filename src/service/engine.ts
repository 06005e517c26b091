import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { MicroBatcher } from '../model/batcher.js';
import { Embedder } from '../model/embedder.js';
import type { Decodes } from '../model/decodes.js';
import type { Picture } from '../model/preprocess.js';
import { parseGenreHead, type GenreHead } from '../search/genre-head.js';
import { graphWalkUnavailable } from '../search/graph-walk.js';
import { buildOnThread } from '../search/index-build.js';
import { PosterFilters } from '../search/poster-filters.js';
import { Searcher } from '../search/searcher.js';
import { SharedSnapshots } from '../search/shared-snapshots.js';
import { type BuildCheckpoint, VectorIndex } from '../search/vector-index.js';
import type { Catalog, Poster } from '../state/catalog.js';
import type { EmbeddingFollower, EmbeddingSpace, EmbeddingStore } from '../state/embeddings.js';
import type { ModelVersion } from '../state/models.js';

/** Posters read from SQLite at a time for a new engine's filters, the event loop free between pages (about 35 ms each). */
const FILTER_PAGE = 10_000;

export interface EngineDeps {
  config: Config;
  catalog: Catalog;
  embeddings: EmbeddingStore;
  log: Logger;
  metrics: Metrics;
  decodes: Decodes;
  /** The near-duplicate index: other servers' writes reach it as they reach the searcher. */
  duplicates?: { follow(keys: number[]): Promise<void> };
}

/** Where a variant's vector index lives: `<version>.usearch`, `<version>.int8.usearch`. */
export function indexPath(dataDir: string, space: EmbeddingSpace): string {
  return join(dataDir, 'indexes', `${space.version}${space.precision === 'fp32' ? '' : `.${space.precision}`}.usearch`);
}

export function loadEmbedder(model: ModelVersion, deps: Pick<EngineDeps, 'config' | 'log'>): Promise<Embedder> {
  return Embedder.load(
    {
      modelPath: join(deps.config.dataDir, model.filePath),
      inputName: model.inputName,
      outputName: model.outputName,
      width: model.inputWidth,
      height: model.inputHeight,
      dims: model.dims,
      device: deps.config.device,
      threads: deps.config.threads,
      spinning: deps.config.ortSpinning,
    },
    deps.log,
  );
}

/**
 * One model version and everything derived from it: the ONNX session, its request batcher, its
 * index and the catalog it covers. Requests hold one engine from start to end, so swapping the
 * active engine never changes the model under a request in flight.
 */
export class Engine {
  private users = 0;
  /** Other servers' writes to this version's embeddings and their posters, applied as they commit (PostgreSQL). */
  private follower: EmbeddingFollower | null = null;
  private retired = false;
  private disposed: Promise<void> | null = null;

  private constructor(
    readonly model: ModelVersion,
    readonly embedder: Embedder,
    readonly searcher: Searcher,
    private readonly batcher: MicroBatcher<Float32Array, Float32Array>,
    private readonly decodes: Decodes,
  ) {}

  private genreList: string[] | null = null;

  private head: GenreHead | null | undefined;

  /** The version's trained genre classifier (model.json `genre_head`), or null when it has none. */
  get genreHead(): GenreHead | null {
    if (this.head === undefined) this.head = parseGenreHead(this.model.source.genre_head, this.model.dims);
    return this.head;
  }

  /** Every genre of the posters this engine searches, for the genre vote's full score list. */
  get genres(): string[] {
    this.genreList ??= this.searcher.genres().sort();
    return this.genreList;
  }

  /** The live catalog, after SQLite has committed: a poster added or its picture replaced. */
  putPoster(poster: Poster, vector: Float32Array): void {
    this.searcher.put(poster, vector);
    this.genreList = null;
  }

  updatePoster(poster: Poster): void {
    this.searcher.update(poster);
    this.genreList = null;
  }

  removePoster(key: number): void {
    this.searcher.remove(key);
    this.genreList = null;
  }

  static async load(model: ModelVersion, deps: EngineDeps, embedder?: Embedder): Promise<Engine> {
    const { config, catalog, embeddings, log, metrics, decodes } = deps;
    const session = embedder ?? (await loadEmbedder(model, deps));
    const started = Date.now();
    const file = indexPath(config.dataDir, model);
    const shared = config.sharedDir ? new SharedSnapshots(config.sharedDir) : null;
    // Before the rows are read: a checkpoint published meanwhile would be newer than their snapshot, and rebuilt.
    const adopted = await shared?.adopt(file, config.indexScalar);
    if (adopted != null) log.info({ version: model.version, position: adopted }, 'index checkpoint taken from the shared directory');
    const snapshot = await embeddings.snapshot(model, model.dims, VectorIndex.checkpointPosition(file, config.indexScalar));
    const build: BuildCheckpoint = async (into, scalar) => buildOnThread(await snapshot.reader(), model, model.dims)(into, scalar);
    let index: VectorIndex;
    try {
      index = await VectorIndex.openWith(build, file, snapshot.source, {
        scalar: config.indexScalar,
        expansion: config.indexExpansion,
        onRebuild: (reason) => log.info({ version: model.version, reason }, 'building the vector index'),
      });
    } finally {
      // A snapshot since a checkpoint holds its transaction open until here, whether the index opened or not.
      snapshot.release?.();
    }
    if (shared && index.rebuilt !== null) await shared.publish(file, config.indexScalar);
    log.info(
      { version: model.version, vectors: index.size, rebuilt: index.rebuilt !== null, replayed: index.replayed, ms: Date.now() - started },
      'vector index ready',
    );
    if (graphWalkUnavailable) log.warn({ reason: graphWalkUnavailable }, "no graph walk for this index (npm install builds it; it reads f32 and f16 graphs): best_score's searches go through usearch's binding");
    const batcher: MicroBatcher<Float32Array, Float32Array> = new MicroBatcher<Float32Array, Float32Array>(
      (tensors): Promise<Float32Array[]> => session.embed(tensors, tensors.length > 1 || batcher.depth > 0),
      { maxBatchSize: config.batchMaxSize, maxWaitMs: config.batchMaxWaitMs, maxQueue: config.queueMax },
      {
        onBatch(size, seconds) {
          metrics.batchSize.observe(size);
          metrics.embedSeconds.observe(seconds);
        },
      },
    );
    const filters = await PosterFilters.inPages((after) => catalog.filterFieldsAfter(after, FILTER_PAGE));
    const engine = new Engine(model, session, new Searcher(index, (key) => embeddings.get(model, key), filters, (keys) => catalog.getMany(keys)), batcher, decodes);
    // From the snapshot's position: what committed while the filters were read is applied again, to the same effect.
    engine.follower = await embeddings.follow(model, snapshot.source.lastChange(), (keys) => engine.apply(keys, deps));
    return engine;
  }

  /** Posters another server changed: each as it is now, or gone (no poster, or no embedding under this version). */
  private async apply(keys: number[], { catalog, embeddings, duplicates }: Pick<EngineDeps, 'catalog' | 'embeddings' | 'duplicates'>): Promise<void> {
    const [vectors, posters] = await Promise.all([embeddings.getMany(this.model, keys), catalog.getMany(keys)]);
    for (const key of keys) {
      const vector = vectors.get(key);
      const poster = posters.get(key);
      if (!vector || !poster) this.removePoster(key);
      else if (sameVector(this.searcher.rowVector(key), vector)) this.updatePoster(poster);
      else this.putPoster(poster, vector);
    }
    await duplicates?.follow(keys);
  }

  get queueDepth(): number {
    return this.batcher.depth;
  }

  /**
   * Decodes, checks and embeds an uploaded image through the shared micro-batcher. The decode is
   * admitted by the decode budget first: a request's waits briefly at most (then 503), one with
   * `waitForDecode` (a batch's items, already one admitted request) as long as it takes.
   * `whileEmbedding` is called with the picture once its forward pass is under way, for work that
   * needs the picture but not the vector (it runs while this thread would otherwise wait).
   */
  async embedUpload(
    bytes: Buffer,
    options: { whileEmbedding?: (image: Picture) => Promise<void>; waitForDecode?: boolean } = {},
  ): Promise<{ vector: Float32Array; image: Picture; timing: { preprocessMs: number; embedMs: number } }> {
    const { whileEmbedding, waitForDecode = false } = options;
    const started = performance.now();
    this.batcher.refuseIfFull(); // before decoding an upload the queue has no room for
    const { tensor, image } = await this.decodes.preprocess(bytes, this.model.preprocessing, waitForDecode ? 'background' : 'request');
    const preprocessed = performance.now();
    const embedding = this.batcher.submit(tensor);
    // Awaited only after whileEmbedding (or never, if that throws): a refusal meanwhile (the queue
    // filled while this upload was decoded) must not count as unhandled, which ends the process.
    embedding.catch(() => {});
    await whileEmbedding?.(image);
    const vector = await embedding;
    return { vector, image, timing: { preprocessMs: preprocessed - started, embedMs: performance.now() - preprocessed } };
  }

  /** Whether this engine has applied the change `id` (another server's write), waiting up to `timeoutMs`; at once where no other server writes. */
  caughtUp(id: bigint, timeoutMs: number): Promise<boolean> {
    return this.follower ? this.follower.waitFor(id, timeoutMs) : Promise.resolve(true);
  }

  /** A request starts using this engine. */
  enter(): void {
    this.users += 1;
  }

  /** A request is done with it; a retired engine is disposed when its last request leaves. */
  leave(): void {
    this.users -= 1;
    if (this.retired && this.users === 0) void this.dispose();
  }

  /** Taken out of service: disposed as soon as no request uses it. */
  retire(): void {
    this.retired = true;
    if (this.users === 0) void this.dispose();
  }

  dispose(): Promise<void> {
    this.disposed ??= Promise.all([this.embedder.release(), this.follower?.stop()]).then(() => {});
    return this.disposed;
  }
}

/** Whether a poster's stored vector is the one the index holds (its int8 rows keep it to about 1e-5): only its metadata changed. */
function sameVector(held: Float32Array | null, stored: Float32Array): boolean {
  if (!held) return false;
  for (let i = 0; i < stored.length; i++) if (Math.abs(held[i]! - stored[i]!) > 1e-4) return false;
  return true;
}
