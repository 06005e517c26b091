import { voteGenres } from '../search/genre-vote.js';
import type { QueryOutcome } from './metrics.js';

/**
 * How well the genre vote's scores rank the queries for each genre: the multi-label view of the
 * genre endpoint. For a genre, every query is scored by that genre's share of the vote of its k
 * nearest neighbours (the endpoint's weights) and is a positive when the genre is among its genres.
 * Per genre: average precision and ROC AUC; macro means over the genres that have both positive
 * and negative queries. Ties are handled as scikit-learn does (average_precision_score takes a tied
 * group at once; roc_auc_score counts a tied pair as half), so training/vote.py computes the same figures.
 */

export interface GenreRanking {
  ap: number;
  auc: number;
  /** Queries carrying the genre. */
  positives: number;
}

export interface Ranking {
  /** Voters per query. */
  k: number;
  /** Mean per-genre average precision (mAP). */
  map: number | null;
  /** Mean per-genre ROC AUC. */
  auc: number | null;
  perGenre: Record<string, GenreRanking>;
}

/** Per query, the vote's score of every genre (absent: 0). */
export function voteScores(queries: QueryOutcome[], k: number): Map<string, number>[] {
  return queries.map((q) => new Map(voteGenres(q.neighbours.slice(0, k), []).scores.map((s) => [s.genre, s.score])));
}

/** Groups of (score, positives, negatives) by distinct score, highest first. */
function tiedGroups(scores: number[], positive: boolean[]): { pos: number; neg: number }[] {
  const order = scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const groups: { pos: number; neg: number }[] = [];
  let last = Number.NaN;
  for (const i of order) {
    if (scores[i] !== last) groups.push({ pos: 0, neg: 0 });
    last = scores[i]!;
    const group = groups.at(-1)!;
    if (positive[i]) group.pos += 1;
    else group.neg += 1;
  }
  return groups;
}

/** Σ over thresholds of (recall gained) × precision at that threshold. */
export function averagePrecision(scores: number[], positive: boolean[]): number {
  const total = positive.filter(Boolean).length;
  if (total === 0) return 0;
  let tp = 0;
  let seen = 0;
  let sum = 0;
  for (const group of tiedGroups(scores, positive)) {
    tp += group.pos;
    seen += group.pos + group.neg;
    sum += (group.pos / total) * (tp / seen);
  }
  return sum;
}

/** P(score of a random positive > score of a random negative), a tie counting half. */
export function rocAuc(scores: number[], positive: boolean[]): number {
  const pos = positive.filter(Boolean).length;
  const neg = positive.length - pos;
  if (pos === 0 || neg === 0) return Number.NaN;
  let negativesAbove = 0;
  let wins = 0;
  for (const group of tiedGroups(scores, positive)) {
    // this group's positives beat every lower negative: count from the negatives still below
    wins += group.pos * (neg - negativesAbove - group.neg) + 0.5 * group.pos * group.neg;
    negativesAbove += group.neg;
  }
  return wins / (pos * neg);
}

export function rankingMetrics(queries: QueryOutcome[], k: number): Ranking {
  const scores = voteScores(queries, k);
  const genres = [...new Set(queries.flatMap((q) => q.genres))].sort();
  const perGenre: Record<string, GenreRanking> = {};
  for (const genre of genres) {
    const positive = queries.map((q) => q.genres.includes(genre));
    const positives = positive.filter(Boolean).length;
    if (positives === 0 || positives === queries.length) continue;
    const s = scores.map((m) => m.get(genre) ?? 0);
    perGenre[genre] = { ap: averagePrecision(s, positive), auc: rocAuc(s, positive), positives };
  }
  const rows = Object.values(perGenre);
  const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);
  return { k, map: mean(rows.map((r) => r.ap)), auc: mean(rows.map((r) => r.auc)), perGenre };
}
