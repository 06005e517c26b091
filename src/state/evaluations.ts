import type { Db } from './db.js';

/** One model version's evaluation, as `marquee eval` wrote it. */
export interface StoredEvaluation {
  modelVersion: string;
  createdAt: string;
  /** The JSON document, as --json writes it. */
  document: string;
  markdown: string;
  /** The catalog it measured (Catalog.fingerprint()); null for evaluations stored before it was kept. */
  catalogFingerprint: string | null;
}

/** The latest evaluation of each model version, in SQLite (GET /admin/models/{version}/report serves it). */
export class EvaluationStore {
  constructor(private readonly db: Db) {}

  put(modelVersion: string, createdAt: string, document: string, markdown: string, catalogFingerprint: string): void {
    this.db
      .prepare(
        `INSERT INTO evaluations (model_version, created_at, document, markdown, catalog_fingerprint) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (model_version) DO UPDATE SET created_at = excluded.created_at, document = excluded.document,
           markdown = excluded.markdown, catalog_fingerprint = excluded.catalog_fingerprint`,
      )
      .run(modelVersion, createdAt, document, markdown, catalogFingerprint);
  }

  latest(modelVersion: string): StoredEvaluation | null {
    const row = this.db
      .prepare('SELECT model_version AS modelVersion, created_at AS createdAt, document, markdown, catalog_fingerprint AS catalogFingerprint FROM evaluations WHERE model_version = ?')
      .get(modelVersion) as StoredEvaluation | undefined;
    return row ?? null;
  }
}
