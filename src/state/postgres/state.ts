import type { PerceptualHash } from '../../search/perceptual-hash.js';
import type { NewPoster, Poster } from '../catalog.js';
import type { EmbeddingSpace } from '../embeddings.js';
import type { VariantPolicy } from '../models.js';
import type { State } from '../state.js';
import { lockId, PostgresCatalog, read, write } from './catalog.js';
import { openPool, type Pool, transaction } from './db.js';
import { PostgresEmbeddingStore, putEmbeddings } from './embeddings.js';
import { PostgresEvaluationStore } from './evaluations.js';
import { PostgresFleetStore } from './fleet.js';
import { PostgresJobStore } from './jobs.js';
import { PostgresModelRegistry } from './models.js';
import { PostgresPosterHashStore, putHash } from './poster-hashes.js';
import { fillTitleTerms, PostgresPosterTitles } from './titles.js';

/** The state of several servers: one PostgreSQL database (`MARQUEE_DATABASE_URL`), migrated at connect, and the stores over it. */
export class PostgresState implements State {
  readonly catalog: PostgresCatalog;
  readonly models: PostgresModelRegistry;
  readonly embeddings: PostgresEmbeddingStore;
  readonly jobs: PostgresJobStore;
  readonly titles: PostgresPosterTitles;
  readonly hashes: PostgresPosterHashStore;
  readonly evaluations: PostgresEvaluationStore;
  readonly fleet: PostgresFleetStore;

  private constructor(
    private readonly pool: Pool,
    url: string,
    variants?: VariantPolicy,
  ) {
    this.catalog = new PostgresCatalog(pool);
    this.models = new PostgresModelRegistry(pool, variants);
    this.embeddings = new PostgresEmbeddingStore(pool, url);
    this.jobs = new PostgresJobStore(pool);
    this.titles = new PostgresPosterTitles(pool);
    this.hashes = new PostgresPosterHashStore(pool);
    this.evaluations = new PostgresEvaluationStore(pool);
    this.fleet = new PostgresFleetStore(pool);
  }

  static async connect(url: string, variants?: VariantPolicy): Promise<PostgresState> {
    const pool = await openPool(url);
    try {
      await fillTitleTerms(pool);
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new PostgresState(pool, url, variants);
  }

  /** As SqliteState.savePoster: poster, embedding and hash in one transaction, the id locked as every write of it is. */
  async savePoster(poster: NewPoster, now: string, embedding: { space: EmbeddingSpace; vector: Float32Array }, hash: PerceptualHash): Promise<Poster> {
    return transaction(this.pool, async (client) => {
      await lockId(client, poster.id);
      await client.query('DELETE FROM deleted_posters WHERE id = $1', [poster.id]);
      const { key } = await write(client, poster, now);
      await putEmbeddings(client, embedding.space, [{ key, vector: embedding.vector }]);
      await putHash(client, key, poster.pixelSha256, hash);
      return (await read(client, poster.id))!;
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
