import { join } from 'node:path';
import type { PerceptualHash } from '../../search/perceptual-hash.js';
import type { NewPoster, Poster } from '../catalog.js';
import type { EmbeddingSpace } from '../embeddings.js';
import type { EvaluationStore } from '../evaluations.js';
import type { JobStore } from '../jobs.js';
import type { ModelRegistry, VariantPolicy } from '../models.js';
import type { PosterHashStore } from '../poster-hashes.js';
import type { State } from '../state.js';
import type { PosterTitles } from '../titles.js';
import { SqliteCatalog } from './catalog.js';
import { type Db, inWriteTransaction, openDb, openReadOnlyDb } from './db.js';
import { SqliteEmbeddingStore } from './embeddings.js';
import { SqliteEvaluationStore } from './evaluations.js';
import { SqliteJobStore } from './jobs.js';
import { SqliteModelRegistry } from './models.js';
import { SqlitePosterHashStore } from './poster-hashes.js';
import { SqlitePosterTitles } from './titles.js';

/**
 * The embedded state: one SQLite database in WAL mode (a data dir's `marquee.db`) and the stores
 * over it. The handle never leaves src/state: a write that spans tables is one method, of a store or
 * of this object, in one transaction of its own.
 */
export class SqliteState implements State {
  readonly catalog: SqliteCatalog;
  readonly models: ModelRegistry;
  readonly embeddings: SqliteEmbeddingStore;
  readonly jobs: JobStore;
  /** The full-text index of titles (GET /posters?q=). */
  readonly titles: PosterTitles;
  readonly hashes: PosterHashStore;
  private readonly hashStore: SqlitePosterHashStore;
  readonly evaluations: EvaluationStore;
  readonly fleet = null;

  private constructor(
    private readonly db: Db,
    variants?: VariantPolicy,
  ) {
    this.catalog = new SqliteCatalog(db);
    this.models = new SqliteModelRegistry(db, variants);
    this.embeddings = new SqliteEmbeddingStore(db);
    this.jobs = new SqliteJobStore(db);
    this.titles = new SqlitePosterTitles(db);
    this.hashes = this.hashStore = new SqlitePosterHashStore(db);
    this.evaluations = new SqliteEvaluationStore(db);
  }

  /** A data dir's database, created and migrated as needed. */
  static open(dataDir: string, variants?: VariantPolicy): SqliteState {
    return new SqliteState(openDb(join(dataDir, 'marquee.db')), variants);
  }

  /**
   * The database file read by a thread of its own (an index build, the embedding map), beside the
   * server's writes; its stores only read.
   */
  static reader(dbFile: string): SqliteState {
    return new SqliteState(openReadOnlyDb(dbFile));
  }

  /** A database that lives and dies with the process (the OpenAPI document, tests of the HTTP layer). */
  static inMemory(variants?: VariantPolicy): SqliteState {
    return new SqliteState(openDb(':memory:'), variants);
  }

  /**
   * A poster written with its picture's embedding and perceptual hash, all or none of them (an add
   * through the API, or a new picture for a poster); its id is no longer deleted.
   */
  async savePoster(poster: NewPoster, now: string, embedding: { space: EmbeddingSpace; vector: Float32Array }, hash: PerceptualHash): Promise<Poster> {
    return inWriteTransaction(this.db, () => {
      this.catalog.undeleteSync(poster.id);
      const { key } = this.catalog.upsertSync(poster, now);
      this.embeddings.putManySync(embedding.space, [{ key, vector: embedding.vector }]);
      this.hashStore.write(key, poster.pixelSha256, hash);
      return this.catalog.getSync(poster.id)!;
    });
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
