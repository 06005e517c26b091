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

/** The latest evaluation of each model version (GET /admin/models/{version}/report serves it). */
export interface EvaluationStore {
  put(modelVersion: string, createdAt: string, document: string, markdown: string, catalogFingerprint: string): Promise<void>;
  latest(modelVersion: string): Promise<StoredEvaluation | null>;
}
