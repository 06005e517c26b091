import type { ModelRegistry, ModelVersion, Precision, VariantPolicy } from '../models.js';
import { json, modelFromRows, variantsByVersion, type ModelRow, type VariantRow } from '../rows.js';
import { type Pool, transaction } from './db.js';

/** ModelRegistry on PostgreSQL: the same hand-out rule as SQLite's (the policy's variant, a faithful int8 only when asked). */
export class PostgresModelRegistry implements ModelRegistry {
  constructor(
    private readonly pool: Pool,
    readonly policy: VariantPolicy = { preferred: 'fp32', faithfulOnly: false },
  ) {}

  get preferred(): Precision {
    return this.policy.preferred;
  }

  async get(version: string, precision?: Precision): Promise<ModelVersion | null> {
    const row = (await this.pool.query<ModelRow>('SELECT * FROM model_versions WHERE version = $1', [version])).rows[0];
    if (!row) return null;
    const variants = (
      await this.pool.query<VariantRow>(
        "SELECT precision, file_path, file_sha256, details FROM model_variants WHERE version = $1 ORDER BY precision = 'fp32' DESC",
        [version],
      )
    ).rows;
    return modelFromRows(row, variants, this.policy, precision);
  }

  async list(): Promise<ModelVersion[]> {
    // Versions first: a version and its first variant are registered together, so each one read has its variants.
    const rows = await this.pool.query<ModelRow>('SELECT * FROM model_versions ORDER BY created_at, version');
    const variants = await this.pool.query<VariantRow & { version: string }>("SELECT version, precision, file_path, file_sha256, details FROM model_variants ORDER BY precision = 'fp32' DESC");
    const byVersion = variantsByVersion(variants.rows);
    return rows.rows.flatMap((row) => modelFromRows(row, byVersion.get(row.version) ?? [], this.policy) ?? []);
  }

  async register(model: Omit<ModelVersion, 'variants'>): Promise<ModelVersion> {
    await transaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO model_versions (version, file_path, file_sha256, dims, input_width, input_height, input_name, output_name,
           preprocessing, source, metrics, checkpoint_path, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (version) DO NOTHING`,
        [
          model.version, model.filePath, model.fileSha256, model.dims, model.inputWidth, model.inputHeight, model.inputName, model.outputName,
          JSON.stringify(model.preprocessing), JSON.stringify(model.source), model.metrics ? JSON.stringify(model.metrics) : null,
          model.checkpointPath, model.createdAt,
        ], // prettier-ignore
      );
      await client.query(
        `INSERT INTO model_variants (version, precision, file_path, file_sha256, details, created_at) VALUES ($1, $2, $3, $4, '{}', $5)
         ON CONFLICT (version, precision) DO NOTHING`,
        [model.version, model.precision, model.filePath, model.fileSha256, model.createdAt],
      );
    });
    return (await this.get(model.version, model.precision))!;
  }

  async addVariant(version: string, precision: Precision, filePath: string, fileSha256: string, details: Record<string, unknown>, now: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO model_variants (version, precision, file_path, file_sha256, details, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (version, precision) DO NOTHING`,
      [version, precision, filePath, fileSha256, JSON.stringify(details), now],
    );
  }

  async variantDetails(version: string, precision: Precision): Promise<Record<string, unknown> | null> {
    const { rows } = await this.pool.query<{ details: unknown }>('SELECT details FROM model_variants WHERE version = $1 AND precision = $2', [
      version,
      precision,
    ]);
    return rows[0] ? json<Record<string, unknown>>(rows[0].details) : null;
  }

  async files(): Promise<string[]> {
    const { rows } = await this.pool.query<{ path: string }>(
      'SELECT file_path AS path FROM model_variants UNION ALL SELECT checkpoint_path FROM model_versions WHERE checkpoint_path IS NOT NULL',
    );
    return rows.map((r) => r.path);
  }

  async setGenreHead(version: string, head: unknown): Promise<void> {
    await this.pool.query("UPDATE model_versions SET source = jsonb_set(source, '{genre_head}', $1::jsonb) WHERE version = $2", [JSON.stringify(head), version]);
  }

  async setMetrics(version: string, metrics: Record<string, unknown>): Promise<void> {
    await this.pool.query('UPDATE model_versions SET metrics = $1 WHERE version = $2', [JSON.stringify(metrics), version]);
  }

  async active(): Promise<ModelVersion | null> {
    const { rows } = await this.pool.query<{ version: string }>('SELECT version FROM active_model WHERE singleton = 1');
    return rows[0] ? this.get(rows[0].version) : null;
  }

  async activate(version: string, now: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO active_model (singleton, version, activated_at) VALUES (1, $1, $2)
       ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at`,
      [version, now],
    );
  }
}
