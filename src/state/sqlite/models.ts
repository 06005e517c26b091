import { type Db, inWriteTransaction } from './db.js';
import type { ModelRegistry, ModelVersion, Precision, VariantPolicy } from '../models.js';
import { modelFromRows, variantsByVersion, type ModelRow, type VariantRow } from '../rows.js';

/**
 * ModelRegistry on SQLite. Model versions, their variants, and which version is active. A version is handed out as the
 * variant the policy prefers (MARQUEE_PRECISION), or the one it has when it has only one.
 */
export class SqliteModelRegistry implements ModelRegistry {
  constructor(
    private readonly db: Db,
    readonly policy: VariantPolicy = { preferred: 'fp32', faithfulOnly: false },
  ) {}

  get preferred(): Precision {
    return this.policy.preferred;
  }

  /** The version in the preferred variant (or its only one); with `precision`, that variant or null. */
  async get(version: string, precision?: Precision): Promise<ModelVersion | null> {
    return this.read(version, precision);
  }

  private read(version: string, precision?: Precision): ModelVersion | null {
    const row = this.db.prepare('SELECT * FROM model_versions WHERE version = ?').get(version) as ModelRow | undefined;
    if (!row) return null;
    const variants = this.db
      .prepare("SELECT precision, file_path, file_sha256, details FROM model_variants WHERE version = ? ORDER BY precision = 'fp32' DESC")
      .all(version) as VariantRow[];
    return modelFromRows(row, variants, this.policy, precision);
  }

  async list(): Promise<ModelVersion[]> {
    const rows = this.db.prepare('SELECT * FROM model_versions ORDER BY created_at, version').all() as ModelRow[];
    const variants = variantsByVersion(this.db.prepare("SELECT version, precision, file_path, file_sha256, details FROM model_variants ORDER BY precision = 'fp32' DESC").all() as (VariantRow & { version: string })[]);
    return rows.flatMap((row) => modelFromRows(row, variants.get(row.version) ?? [], this.policy) ?? []);
  }

  /** Registering the same file twice is a no-op: the version name derives from its checksum. */
  async register(model: Omit<ModelVersion, 'variants'>): Promise<ModelVersion> {
    inWriteTransaction(this.db, () => {
      this.db
        .prepare(
          `INSERT OR IGNORE INTO model_versions (version, file_path, file_sha256, dims, input_width, input_height, input_name,
             output_name, preprocessing, source, metrics, checkpoint_path, created_at)
           VALUES (@version, @filePath, @fileSha256, @dims, @inputWidth, @inputHeight, @inputName, @outputName,
             @preprocessing, @source, @metrics, @checkpointPath, @createdAt)`,
        )
        .run({
          ...model,
          preprocessing: JSON.stringify(model.preprocessing),
          source: JSON.stringify(model.source),
          metrics: model.metrics ? JSON.stringify(model.metrics) : null,
        });
      this.insertVariant(model.version, model.precision, model.filePath, model.fileSha256, {}, model.createdAt);
    });
    return this.read(model.version, model.precision)!;
  }

  /** Records a variant's file (an int8 copy made after registration); a no-op if the version has that variant. */
  async addVariant(version: string, precision: Precision, filePath: string, fileSha256: string, details: Record<string, unknown>, now: string): Promise<void> {
    this.insertVariant(version, precision, filePath, fileSha256, details, now);
  }

  private insertVariant(version: string, precision: Precision, filePath: string, fileSha256: string, details: Record<string, unknown>, now: string): void {
    this.db
      .prepare(
        `INSERT OR IGNORE INTO model_variants (version, precision, file_path, file_sha256, details, created_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(version, precision, filePath, fileSha256, JSON.stringify(details), now);
  }

  /** How a variant was made (quantisation settings and parity figures); null if the version has no such variant. */
  async variantDetails(version: string, precision: Precision): Promise<Record<string, unknown> | null> {
    const details = this.db.prepare('SELECT details FROM model_variants WHERE version = ? AND precision = ?').pluck().get(version, precision) as
      | string
      | undefined;
    return details === undefined ? null : (JSON.parse(details) as Record<string, unknown>);
  }

  /** Every file a version names (each variant's ONNX file, the checkpoint), relative to the data dir. */
  async files(): Promise<string[]> {
    const variants = this.db.prepare('SELECT file_path FROM model_variants').pluck().all() as string[];
    const checkpoints = this.db.prepare('SELECT checkpoint_path FROM model_versions WHERE checkpoint_path IS NOT NULL').pluck().all() as string[];
    return [...variants, ...checkpoints];
  }

  /** A version's genre head, when its directory gained one after it was registered (`python -m training fit-head`). */
  async setGenreHead(version: string, head: unknown): Promise<void> {
    this.db
      .prepare("UPDATE model_versions SET source = json_set(source, '$.genre_head', json(?)) WHERE version = ?")
      .run(JSON.stringify(head), version);
  }

  async setMetrics(version: string, metrics: Record<string, unknown>): Promise<void> {
    this.db.prepare('UPDATE model_versions SET metrics = ? WHERE version = ?').run(JSON.stringify(metrics), version);
  }

  async active(): Promise<ModelVersion | null> {
    const row = this.db.prepare('SELECT version FROM active_model WHERE singleton = 1').get() as { version: string } | undefined;
    return row ? this.read(row.version) : null;
  }

  async activate(version: string, now: string): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO active_model (singleton, version, activated_at) VALUES (1, ?, ?)
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at`,
      )
      .run(version, now);
  }
}
