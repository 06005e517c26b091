import type { EmbeddingSpace } from '../embeddings.js';
import type { FleetStore } from '../fleet.js';
import type { Pool } from './db.js';

/** FleetStore on PostgreSQL (migrations/postgres/007). */
export class PostgresFleetStore implements FleetStore {
  constructor(private readonly pool: Pool) {}

  async heartbeat(server: string): Promise<void> {
    await this.pool.query('INSERT INTO servers (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET seen_at = now()', [server]);
  }

  async leave(server: string): Promise<void> {
    await this.pool.query('DELETE FROM servers WHERE id = $1', [server]);
  }

  async live(withinMs: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>("SELECT id FROM servers WHERE seen_at > now() - $1 * interval '1 millisecond' ORDER BY id", [withinMs]);
    return rows.map((r) => r.id);
  }

  async propose(space: EmbeddingSpace): Promise<void> {
    await this.pool.query(
      `INSERT INTO model_candidates (version, precision) VALUES ($1, $2)
       ON CONFLICT (version, precision) DO UPDATE SET requested_at = now()`,
      [space.version, space.precision],
    );
  }

  async withdraw(space: EmbeddingSpace): Promise<void> {
    await this.pool.query('DELETE FROM model_candidates WHERE version = $1 AND precision = $2', [space.version, space.precision]);
  }

  async candidates(withinMs: number): Promise<EmbeddingSpace[]> {
    const { rows } = await this.pool.query<EmbeddingSpace>(
      "SELECT version, precision FROM model_candidates WHERE requested_at > now() - $1 * interval '1 millisecond' ORDER BY requested_at",
      [withinMs],
    );
    return rows;
  }

  async markReady(space: EmbeddingSpace, server: string): Promise<void> {
    await this.pool.query('INSERT INTO model_ready (version, precision, server) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [space.version, space.precision, server]);
  }

  async ready(space: EmbeddingSpace): Promise<string[]> {
    const { rows } = await this.pool.query<{ server: string }>('SELECT server FROM model_ready WHERE version = $1 AND precision = $2 ORDER BY server', [
      space.version,
      space.precision,
    ]);
    return rows.map((r) => r.server);
  }

  async activeVersion(): Promise<string | null> {
    const { rows } = await this.pool.query<{ version: string }>('SELECT version FROM active_model WHERE singleton = 1');
    return rows[0]?.version ?? null;
  }
}
