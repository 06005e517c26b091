import type { PreprocessingSpec } from '../model/preprocess.js';

/** A variant of a model version: its float32 file, or an int8 copy quantised by the training package. */
export type Precision = 'fp32' | 'int8';

/**
 * One model version as it is served: one of its variants. `filePath` and `fileSha256` are that
 * variant's; its embeddings and index are its own (EmbeddingSpace: version + precision).
 */
export interface ModelVersion {
  version: string;
  precision: Precision;
  /** Every variant the version has. */
  variants: Precision[];
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

/** Which variant to hand out: the preferred one, and, for int8 chosen automatically, only a faithful one. */
export interface VariantPolicy {
  preferred: Precision;
  /** Hand out an int8 variant only if its parity check passed (MARQUEE_PRECISION=auto). */
  faithfulOnly: boolean;
}

/** The least mean top-8 overlap with float32, in the quantiser's check, of an int8 variant served automatically. */
export const FAITHFUL_TOP8_OVERLAP = 0.9;

/** Why an int8 variant is not faithful enough to serve automatically; null if it is. */
export function unfaithful(details: Record<string, unknown> | null): string | null {
  const parity = (details?.quantization as { parity?: Record<string, number> } | null | undefined)?.parity;
  const overlap = parity ? Object.entries(parity).find(([name]) => /^top\d+_overlap$/.test(name))?.[1] : undefined;
  if (overlap === undefined) return 'it has no parity check (no val posters)';
  if (overlap < FAITHFUL_TOP8_OVERLAP) return `its neighbours overlap float32's by ${overlap.toFixed(3)} < ${FAITHFUL_TOP8_OVERLAP}`;
  return null;
}

/**
 * Model versions, their variants, and which version is active. A version is handed out as the
 * variant the policy prefers (MARQUEE_PRECISION), or the one it has when it has only one.
 */
export interface ModelRegistry {
  readonly policy: VariantPolicy;
  readonly preferred: Precision;
  /** The version in the preferred variant (or its only one); with `precision`, that variant or null. */
  get(version: string, precision?: Precision): Promise<ModelVersion | null>;
  /** Every version, the oldest first. */
  list(): Promise<ModelVersion[]>;
  /** Registering the same file twice is a no-op: the version name derives from its checksum. */
  register(model: Omit<ModelVersion, 'variants'>): Promise<ModelVersion>;
  /** Records a variant's file (an int8 copy made after registration); a no-op if the version has that variant. */
  addVariant(version: string, precision: Precision, filePath: string, fileSha256: string, details: Record<string, unknown>, now: string): Promise<void>;
  /** How a variant was made (quantisation settings and parity figures); null if the version has no such variant. */
  variantDetails(version: string, precision: Precision): Promise<Record<string, unknown> | null>;
  /** Every file a version names (each variant's ONNX file, the checkpoint), relative to the data dir. */
  files(): Promise<string[]>;
  /** A version's genre head, when its directory gained one after it was registered (`python -m training fit-head`). */
  setGenreHead(version: string, head: unknown): Promise<void>;
  setMetrics(version: string, metrics: Record<string, unknown>): Promise<void>;
  active(): Promise<ModelVersion | null>;
  activate(version: string, now: string): Promise<void>;
}
