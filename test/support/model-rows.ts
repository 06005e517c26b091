import type { Db } from '../../src/state/sqlite/db.js';

/**
 * A model version and its fp32 variant, as rows only (no model file): for tests of what is derived
 * from embeddings (indexes, searches, the change log), which need a variant to store them under.
 */
export function registerVariantRows(db: Db, version: string, dims: number): { version: string; precision: 'fp32' } {
  db.prepare(
    `INSERT INTO model_versions (version, file_path, file_sha256, dims, input_width, input_height, input_name, output_name, preprocessing, source, created_at)
     VALUES (?, 'models/x.onnx', 'x', ?, 1, 1, 'image', 'embedding', '{}', '{}', 'now')`,
  ).run(version, dims);
  db.prepare("INSERT INTO model_variants (version, precision, file_path, file_sha256, details, created_at) VALUES (?, 'fp32', 'models/x.onnx', 'x', '{}', 'now')").run(version);
  return { version, precision: 'fp32' };
}
