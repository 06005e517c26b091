/**
 * The arithmetic of the two recommend strategies (POST /posters/recommend), over unit embeddings.
 *
 * average_vector: one query, the sum of the positive examples minus the sum of the negative ones,
 * made unit length, searched as any query is. (Qdrant's average_vector weighs the means instead,
 * 2 · mean(positives) − mean(negatives); with one positive and no negative both are that positive.)
 *
 * best_score, as Qdrant defines it (https://qdrant.tech/documentation/concepts/explore/): each
 * candidate is compared with every example; if its best similarity to a positive beats its best
 * to a negative, its score is sigmoid(best positive), else −sigmoid(best negative), with
 * sigmoid(x) = 0.5 · (1 + x / (1 + |x|)). So every candidate nearer a positive ranks above every
 * one nearer a negative; the former by their best positive, the latter the farther from every negative the better.
 */

export const STRATEGIES = ['average_vector', 'best_score'] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** average_vector's query; null when the examples cancel out (no direction is left). */
export function averageVector(positives: Float32Array[], negatives: Float32Array[]): Float32Array | null {
  const dims = positives[0]!.length;
  const sum = new Float64Array(dims);
  for (const vector of positives) for (let d = 0; d < dims; d++) sum[d]! += vector[d]!;
  for (const vector of negatives) for (let d = 0; d < dims; d++) sum[d]! -= vector[d]!;
  let norm = 0;
  for (let d = 0; d < dims; d++) norm += sum[d]! * sum[d]!;
  norm = Math.sqrt(norm);
  if (!(norm > 1e-6)) return null;
  const out = new Float32Array(dims);
  for (let d = 0; d < dims; d++) out[d] = sum[d]! / norm;
  return out;
}

/** Qdrant's normalising sigmoid: (-∞, ∞) onto (0, 1), keeping the order. */
const sigmoid = (x: number): number => 0.5 * (1 + x / (1 + Math.abs(x)));

/** best_score from a candidate's best similarity to a positive and to a negative (−∞ with no negative). */
export function bestScore(bestPositive: number, bestNegative: number): number {
  return bestPositive > bestNegative ? sigmoid(bestPositive) : -sigmoid(bestNegative);
}
