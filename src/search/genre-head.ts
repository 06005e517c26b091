/**
 * The genre head a model version may carry (model.json `genre_head`, fitted by the training package,
 * training/genre_head.py): one logistic regression per genre on the unit embedding, Platt-calibrated
 * on `val`, with a decision threshold per genre chosen on `val`. Applied here to the embedding the
 * server already computed, so the int8 and float32 variants of a version share it.
 */

export const HEAD_FORMAT = 'marquee-genre-head/1';

export interface GenreHead {
  classes: string[];
  dims: number;
  /** [classes × dims], row-major. */
  weight: Float32Array;
  bias: Float32Array;
  scale: Float32Array;
  offset: Float32Array;
  thresholds: Float32Array;
}

export interface GenreProbability {
  genre: string;
  /** Calibrated probability that the poster has this genre. */
  probability: number;
  /** The probability from which this genre is predicted (chosen on `val`). */
  threshold: number;
  predicted: boolean;
}

export interface GenreClassification {
  /** Every genre the head knows, most probable first. */
  probabilities: GenreProbability[];
  /** The genres above their threshold, most probable first. */
  predicted: string[];
}

interface StoredHead {
  format?: unknown;
  classes?: unknown;
  weight?: unknown;
  bias?: unknown;
  calibration?: { scale?: unknown; offset?: unknown };
  thresholds?: unknown;
}

/** The head stored in a version's model.json, or null when it has none; throws on a malformed one. */
export function parseGenreHead(stored: unknown, dims: number): GenreHead | null {
  if (stored === undefined || stored === null) return null;
  const head = stored as StoredHead;
  if (head.format !== HEAD_FORMAT) throw new Error(`genre_head has format ${JSON.stringify(head.format)}, expected ${HEAD_FORMAT}`);
  const classes = head.classes;
  if (!Array.isArray(classes) || classes.length === 0 || !classes.every((c) => typeof c === 'string')) throw new Error('genre_head.classes must be genre names');
  const n = classes.length;
  const vector = (value: unknown, name: string, length: number): Float32Array => {
    if (!Array.isArray(value) || value.length !== length || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new Error(`genre_head.${name} must be ${length} finite numbers`);
    }
    return Float32Array.from(value as number[]);
  };
  const rows = head.weight;
  if (!Array.isArray(rows) || rows.length !== n) throw new Error(`genre_head.weight must have ${n} rows`);
  const weight = new Float32Array(n * dims);
  rows.forEach((row, i) => weight.set(vector(row, `weight[${i}]`, dims), i * dims));
  return {
    classes: classes as string[],
    dims,
    weight,
    bias: vector(head.bias, 'bias', n),
    scale: vector(head.calibration?.scale, 'calibration.scale', n),
    offset: vector(head.calibration?.offset, 'calibration.offset', n),
    thresholds: vector(head.thresholds, 'thresholds', n),
  };
}

/** Calibrated probabilities of every genre for one unit embedding. */
export function classifyGenres(head: GenreHead, embedding: Float32Array): GenreClassification {
  const probabilities: GenreProbability[] = head.classes.map((genre, c) => {
    let logit = head.bias[c]!;
    const row = c * head.dims;
    for (let d = 0; d < head.dims; d++) logit += head.weight[row + d]! * embedding[d]!;
    const probability = 1 / (1 + Math.exp(-(head.scale[c]! * logit + head.offset[c]!)));
    const threshold = head.thresholds[c]!;
    return { genre, probability, threshold, predicted: probability >= threshold };
  });
  probabilities.sort((a, b) => b.probability - a.probability || a.genre.localeCompare(b.genre));
  return { probabilities, predicted: probabilities.filter((p) => p.predicted).map((p) => p.genre) };
}
