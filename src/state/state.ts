import { join } from 'node:path';
import type { PerceptualHash } from '../search/perceptual-hash.js';
import type { Catalog, NewPoster, Poster } from './catalog.js';
import type { EmbeddingSpace, EmbeddingStore } from './embeddings.js';
import type { EvaluationStore } from './evaluations.js';
import type { JobStore } from './jobs.js';
import type { ModelRegistry, VariantPolicy } from './models.js';
import { SqliteModelRegistry } from './sqlite/models.js';
import type { PosterHashStore } from './poster-hashes.js';
import { type Db, inWriteTransaction, openDb, openReadOnlyDb } from './sqlite/db.js';
import { SqliteCatalog } from './sqlite/catalog.js';
import { SqliteEmbeddingStore } from './sqlite/embeddings.js';
import { SqliteEvaluationStore } from './sqlite/evaluations.js';
import { SqliteJobStore } from './sqlite/jobs.js';
import { SqlitePosterHashStore } from './sqlite/poster-hashes.js';
import { SqlitePosterTitles } from './sqlite/titles.js';
import type { PosterTitles } from './titles.js';

/**
 * Where state lives: one SQLite database in WAL mode (a data dir's `marquee.db`) and the stores over
 * it. The handle never leaves src/state: a write that spans tables is one method, of a store or of
 * this object, in one transaction of its own.
 */
export class State {
  readonly catalog: Catalog;
  readonly models: ModelRegistry;
  readonly embeddings: EmbeddingStore;
  readonly jobs: JobStore;
  /** The full-text index of titles (GET /posters?q=). */
  readonly titles: PosterTitles;
  readonly hashes: PosterHashStore;
  private readonly hashStore: SqlitePosterHashStore;
  private readonly catalogStore: SqliteCatalog;
  private readonly embeddingStore: SqliteEmbeddingStore;
  readonly evaluations: EvaluationStore;

  private constructor(
    private readonly db: Db,
    variants?: VariantPolicy,
  ) {
    this.catalog = this.catalogStore = new SqliteCatalog(db);
    this.models = new SqliteModelRegistry(db, variants);
    this.embeddings = this.embeddingStore = new SqliteEmbeddingStore(db);
    this.jobs = new SqliteJobStore(db);
    this.titles = new SqlitePosterTitles(db);
    this.hashes = this.hashStore = new SqlitePosterHashStore(db);
    this.evaluations = new SqliteEvaluationStore(db);
  }

  /** A data dir's database, created and migrated as needed. */
  static open(dataDir: string, variants?: VariantPolicy): State {
    return new State(openDb(join(dataDir, 'marquee.db')), variants);
  }

  /**
   * The database file read by a thread of its own (an index build, the embedding map), beside the
   * server's writes; its stores only read.
   */
  static reader(dbFile: string): State {
    return new State(openReadOnlyDb(dbFile));
  }

  /** A database that lives and dies with the process (the OpenAPI document, tests of the HTTP layer). */
  static inMemory(variants?: VariantPolicy): State {
    return new State(openDb(':memory:'), variants);
  }

  /**
   * A poster written with its picture's embedding and perceptual hash, all or none of them (an add
   * through the API, or a new picture for a poster); its id is no longer deleted.
   */
  async savePoster(poster: NewPoster, now: string, embedding: { space: EmbeddingSpace; vector: Float32Array }, hash: PerceptualHash): Promise<Poster> {
    return inWriteTransaction(this.db, () => {
      this.catalogStore.undeleteSync(poster.id);
      const { key } = this.catalogStore.upsertSync(poster, now);
      this.embeddingStore.putManySync(embedding.space, [{ key, vector: embedding.vector }]);
      this.hashStore.write(key, poster.pixelSha256, hash);
      return this.catalogStore.getSync(poster.id)!;
    });
  }

  close(): void {
    this.db.close();
  }
}
