import type { EvaluationStore, StoredEvaluation } from '../evaluations.js';
import type { Db } from './db.js';

/** The latest evaluation of each model version, in SQLite (GET /admin/models/{version}/report serves it). */
export class SqliteEvaluationStore implements EvaluationStore {
  constructor(private readonly db: Db) {}

  async put(modelVersion: string, createdAt: string, document: string, markdown: string, catalogFingerprint: string): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO evaluations (model_version, created_at, document, markdown, catalog_fingerprint) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (model_version) DO UPDATE SET created_at = excluded.created_at, document = excluded.document,
           markdown = excluded.markdown, catalog_fingerprint = excluded.catalog_fingerprint`,
      )
      .run(modelVersion, createdAt, document, markdown, catalogFingerprint);
  }

  async latest(modelVersion: string): Promise<StoredEvaluation | null> {
    const row = this.db
      .prepare('SELECT model_version AS modelVersion, created_at AS createdAt, document, markdown, catalog_fingerprint AS catalogFingerprint FROM evaluations WHERE model_version = ?')
      .get(modelVersion) as StoredEvaluation | undefined;
    return row ?? null;
  }
}
