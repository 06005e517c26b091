import type { PreprocessingSpec } from '../model/preprocess.js';
import type { Db } from './db.js';

export interface ModelVersion {
  version: string;
  filePath: string;
  fileSha256: string;
  dims: number;
  inputWidth: number;
  inputHeight: number;
  inputName: string;
  outputName: string;
  preprocessing: PreprocessingSpec;
  source: Record<string, unknown>;
  metrics: Record<string, unknown> | null;
  /** The PyTorch checkpoint (model.pt) relative to the data dir, when there is one to train from. */
  checkpointPath: string | null;
  createdAt: string;
}

interface ModelRow {
  version: string;
  file_path: string;
  file_sha256: string;
  dims: number;
  input_width: number;
  input_height: number;
  input_name: string;
  output_name: string;
  preprocessing: string;
  source: string;
  metrics: string | null;
  checkpoint_path: string | null;
  created_at: string;
}

function fromRow(row: ModelRow): ModelVersion {
  return {
    version: row.version,
    filePath: row.file_path,
    fileSha256: row.file_sha256,
    dims: row.dims,
    inputWidth: row.input_width,
    inputHeight: row.input_height,
    inputName: row.input_name,
    outputName: row.output_name,
    preprocessing: JSON.parse(row.preprocessing) as PreprocessingSpec,
    source: JSON.parse(row.source) as Record<string, unknown>,
    metrics: row.metrics ? (JSON.parse(row.metrics) as Record<string, unknown>) : null,
    checkpointPath: row.checkpoint_path,
    createdAt: row.created_at,
  };
}

/** Model versions and which one is active. */
export class ModelRegistry {
  constructor(private readonly db: Db) {}

  get(version: string): ModelVersion | null {
    const row = this.db.prepare('SELECT * FROM model_versions WHERE version = ?').get(version) as ModelRow | undefined;
    return row ? fromRow(row) : null;
  }

  list(): ModelVersion[] {
    return (this.db.prepare('SELECT * FROM model_versions ORDER BY created_at, version').all() as ModelRow[]).map(fromRow);
  }

  /** Registering the same file twice is a no-op: the version name derives from its checksum. */
  register(model: ModelVersion): ModelVersion {
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
    return this.get(model.version)!;
  }

  setMetrics(version: string, metrics: Record<string, unknown>): void {
    this.db.prepare('UPDATE model_versions SET metrics = ? WHERE version = ?').run(JSON.stringify(metrics), version);
  }

  active(): ModelVersion | null {
    const row = this.db.prepare('SELECT version FROM active_model WHERE singleton = 1').get() as { version: string } | undefined;
    return row ? this.get(row.version) : null;
  }

  activate(version: string, now: string): void {
    this.db
      .prepare(
        `INSERT INTO active_model (singleton, version, activated_at) VALUES (1, ?, ?)
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at`,
      )
      .run(version, now);
  }
}
