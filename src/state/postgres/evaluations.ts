import type { EvaluationStore, StoredEvaluation } from '../evaluations.js';
import type { Pool } from './db.js';

/** EvaluationStore on PostgreSQL. */
export class PostgresEvaluationStore implements EvaluationStore {
  constructor(private readonly pool: Pool) {}

  async put(modelVersion: string, createdAt: string, document: string, markdown: string, catalogFingerprint: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO evaluations (model_version, created_at, document, markdown, catalog_fingerprint) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (model_version) DO UPDATE SET created_at = excluded.created_at, document = excluded.document,
         markdown = excluded.markdown, catalog_fingerprint = excluded.catalog_fingerprint`,
      [modelVersion, createdAt, document, markdown, catalogFingerprint],
    );
  }

  async latest(modelVersion: string): Promise<StoredEvaluation | null> {
    const { rows } = await this.pool.query<StoredEvaluation>(
      `SELECT model_version AS "modelVersion", created_at AS "createdAt", document, markdown, catalog_fingerprint AS "catalogFingerprint"
       FROM evaluations WHERE model_version = $1`,
      [modelVersion],
    );
    return rows[0] ?? null;
  }
}
