/**
 * Maximal marginal relevance (Carbonell and Goldstein, 1998): diverse answers from a ranked pool.
 * It picks k candidates one at a time, each time the one with the highest
 *
 *   (1 − diversity) · relevance − diversity · (its highest cosine similarity to those already picked),
 *
 * so that diversity 0 keeps the pool's order and 1 spreads the answers as far apart as it can
 * (the first pick is always the most relevant).
 */

export interface MmrCandidate {
  /** How good an answer it is on its own (a cosine similarity, or a recommend score), higher is better. */
  relevance: number;
  /** Its unit embedding, to compare it with the others. */
  vector: Float32Array;
}

/** The indices of the candidates picked, in the order picked; ties go to the earlier candidate. */
export function maximalMarginalRelevance(candidates: MmrCandidate[], k: number, diversity: number): number[] {
  const count = Math.min(k, candidates.length);
  // Each candidate's highest similarity to a picked one; none picked yet.
  const closest = new Float64Array(candidates.length).fill(Number.NEGATIVE_INFINITY);
  const picked: number[] = [];
  const taken = new Uint8Array(candidates.length);
  while (picked.length < count) {
    let best = -1;
    let bestValue = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < candidates.length; i++) {
      if (taken[i]) continue;
      const penalty = picked.length === 0 ? 0 : closest[i]!;
      const value = (1 - diversity) * candidates[i]!.relevance - diversity * penalty;
      if (value > bestValue) [best, bestValue] = [i, value];
    }
    picked.push(best);
    taken[best] = 1;
    const chosen = candidates[best]!.vector;
    for (let i = 0; i < candidates.length; i++) {
      if (!taken[i]) closest[i] = Math.max(closest[i]!, dot(candidates[i]!.vector, chosen));
    }
  }
  return picked;
}

export function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let d = 0; d < a.length; d++) sum += a[d]! * b[d]!;
  return sum;
}
