import type { PerceptualHash } from '../search/perceptual-hash.js';
import type { Catalog, NewPoster, Poster } from './catalog.js';
import type { EmbeddingSpace, EmbeddingStore } from './embeddings.js';
import type { EvaluationStore } from './evaluations.js';
import type { FleetStore } from './fleet.js';
import type { JobStore } from './jobs.js';
import type { ModelRegistry, VariantPolicy } from './models.js';
import type { PosterHashStore } from './poster-hashes.js';
import { PostgresState } from './postgres/state.js';
import { SqliteState } from './sqlite/state.js';
import type { PosterTitles } from './titles.js';

/**
 * Where state lives, and the one place a database is opened: the data dir's SQLite file (the
 * embedded default), or a PostgreSQL database several servers share (`MARQUEE_DATABASE_URL`). No
 * handle leaves src/state: a write that spans tables is one method, of a store or of this object.
 */
export interface State {
  readonly catalog: Catalog;
  readonly models: ModelRegistry;
  readonly embeddings: EmbeddingStore;
  readonly jobs: JobStore;
  /** The full-text index of titles (GET /posters?q=). */
  readonly titles: PosterTitles;
  readonly hashes: PosterHashStore;
  readonly evaluations: EvaluationStore;
  /** The servers sharing the database and their model swaps; null where one server holds it (SQLite). */
  readonly fleet: FleetStore | null;
  /**
   * A poster written with its picture's embedding and perceptual hash, all or none of them (an add
   * through the API, or a new picture for a poster); its id is no longer deleted.
   */
  savePoster(poster: NewPoster, now: string, embedding: { space: EmbeddingSpace; vector: Float32Array }, hash: PerceptualHash): Promise<Poster>;
  close(): Promise<void>;
}

export const State = {
  /** The database at `databaseUrl` (postgres://…) when given, else the data dir's; created and migrated as needed. */
  async connect(location: { dataDir: string; databaseUrl?: string | null }, variants?: VariantPolicy): Promise<State> {
    return location.databaseUrl ? PostgresState.connect(location.databaseUrl, variants) : SqliteState.open(location.dataDir, variants);
  },
  /** A data dir's SQLite database, created and migrated as needed. */
  open: (dataDir: string, variants?: VariantPolicy) => SqliteState.open(dataDir, variants),
  /** A SQLite file read by a thread of its own (an index build), beside the server's writes; its stores only read. */
  reader: (dbFile: string) => SqliteState.reader(dbFile),
  /** A SQLite database that lives and dies with the process (the OpenAPI document, tests of the HTTP layer). */
  inMemory: (variants?: VariantPolicy) => SqliteState.inMemory(variants),
};
