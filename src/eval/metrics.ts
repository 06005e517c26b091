import { majorityGenre, votedGenres, voteGenres, type Voter } from '../search/genre-vote.js';
import { rankingMetrics, type Ranking } from './ranking.js';

/**
 * The one implementation of Marquee's quality metrics: `marquee eval`, the retrain gate and the
 * admin model reports all call these functions. Inputs are plain neighbour lists, so the same code
 * scores the model, the served index, the paper's protocol and every baseline.
 */

export const RECALL_KS = [1, 3, 8] as const;
export const MAJORITY_KS = [1, 3, 5, 8] as const;
/** The genre endpoint's default number of voters (GET /posters/genres, `k`). */
export const VOTE_K = 5;
/** Voters per query of the genre-ranking figures (mAP, AUC): the endpoint's default, and 10. */
export const RANKING_KS = [VOTE_K, 10] as const;

export const METRICS = [
  'recall@1',
  'recall@3',
  'recall@8',
  'majority@1',
  'majority@3',
  'majority@5',
  'majority@8',
  'any_genre_hit@1',
  'map@r',
  'vote_accuracy',
  'vote_f1',
] as const;
export type MetricName = (typeof METRICS)[number];
/** Metrics that are a mean over queries (everything but the F1, which pools per-genre counts). */
type QueryMetric = Exclude<MetricName, 'vote_f1'>;

/** What a query is labelled with. */
export interface Labels {
  singleGenre: string;
  genres: string[];
}

export interface QueryOutcome extends Labels {
  /** Gallery neighbours, nearest first, the query itself already left out (except in the paper's protocol). */
  neighbours: Voter[];
  /**
   * R for MAP@R: how many gallery items share the query's single genre (not counting the query
   * itself). The neighbour list must hold at least R entries for MAP@R to be computed.
   */
  relevant: number;
}

/**
 * `single`: a neighbour matches when its single genre equals the query's (the honest rule).
 * `any`: when it shares any genre with the query's genres (the paper's lenient rule; MAP@R is then undefined).
 */
export type MatchRule = 'single' | 'any';

export type MetricValues = Record<MetricName, number | null>;

export interface GenreRow {
  /** Queries whose single genre this is: the group the query-mean metrics average over. */
  queries: number;
  /** Queries carrying this genre among their genres: the support of its multi-label F1. */
  labelled: number;
  metrics: MetricValues;
}

export interface Summary {
  queries: number;
  /** Mean over queries (for vote_f1: F1 of the true/false positives pooled over genres). */
  micro: MetricValues;
  /** Mean over the genres present among the queries of each genre's figure. */
  macro: MetricValues;
  perGenre: Record<string, GenreRow>;
  /** How well the vote's scores rank queries per genre (multi-label), one entry per RANKING_KS. */
  ranking: Ranking[];
}

/** One query's scores: 0/1 hits, its average precision at R, and the genres its vote predicts. */
export interface QueryScore {
  singleGenre: string;
  genres: string[];
  values: Record<QueryMetric, number | null>;
  predicted: string[];
}

export function genreCounts(items: Labels[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item.singleGenre, (counts.get(item.singleGenre) ?? 0) + 1);
  return counts;
}

function matcher(query: Labels, rule: MatchRule): (genres: string[], single: string) => boolean {
  if (rule === 'single') return (_genres, single) => single === query.singleGenre;
  const wanted = new Set(query.genres);
  return (genres) => genres.some((g) => wanted.has(g));
}

/**
 * Average precision over the first R neighbours, divided by R (pytorch-metric-learning's
 * mean_average_precision_at_r for one query): Σ_{i ≤ R} P(i)·rel(i) / R. R = 0 (the query's genre
 * is absent from the gallery) scores 0: such a query cannot be answered, so it counts as a miss.
 */
export function averagePrecisionAtR(relevance: boolean[], r: number): number {
  if (r === 0) return 0;
  if (relevance.length < r) throw new Error(`MAP@R needs ${r} neighbours, got ${relevance.length}`);
  let hits = 0;
  let sum = 0;
  for (let i = 0; i < r; i++) {
    if (!relevance[i]) continue;
    hits += 1;
    sum += hits / (i + 1);
  }
  return sum / r;
}

/** Genres the vote of the k nearest neighbours predicts (the genre endpoint's rule, votedGenres). */
export function predictedGenres(neighbours: Voter[], k = VOTE_K): { top: string | null; genres: string[] } {
  const vote = voteGenres(neighbours.slice(0, k), []);
  return { top: vote.genre, genres: votedGenres(vote) };
}

export function scoreQuery(query: QueryOutcome, rule: MatchRule = 'single'): QueryScore {
  const matches = matcher(query, rule);
  const relevance = query.neighbours.map((n) => matches(n.genres, n.singleGenre));
  const values = {} as Record<QueryMetric, number | null>;
  for (const k of RECALL_KS) values[`recall@${k}`] = relevance.slice(0, k).some(Boolean) ? 1 : 0;
  for (const k of MAJORITY_KS) {
    // Ties in the count go to the genre with the most similar voter (majorityGenre), never to the query's.
    const winner = majorityGenre(query.neighbours.slice(0, k)).genre;
    values[`majority@${k}`] = winner !== null && matches([winner], winner) ? 1 : 0;
  }
  const prediction = predictedGenres(query.neighbours);
  values['any_genre_hit@1'] = prediction.top !== null && query.genres.includes(prediction.top) ? 1 : 0;
  values.vote_accuracy = prediction.top === query.singleGenre ? 1 : 0;
  values['map@r'] = rule === 'single' ? averagePrecisionAtR(relevance, query.relevant) : null;
  return { singleGenre: query.singleGenre, genres: query.genres, values, predicted: prediction.genres };
}

function mean(values: (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : present.reduce((a, b) => a + b, 0) / present.length;
}

function f1(counts: { tp: number; fp: number; fn: number }): number {
  const denominator = 2 * counts.tp + counts.fp + counts.fn;
  return denominator === 0 ? 0 : (2 * counts.tp) / denominator;
}

/** Micro, macro and per-genre figures of a set of scored queries. */
export function summarise(scores: QueryScore[]): Omit<Summary, 'ranking'> {
  const groups = new Map<string, QueryScore[]>();
  for (const score of scores) {
    const group = groups.get(score.singleGenre);
    if (group) group.push(score);
    else groups.set(score.singleGenre, [score]);
  }
  const confusion = new Map<string, { tp: number; fp: number; fn: number; labelled: number }>();
  const entry = (genre: string) => {
    let counts = confusion.get(genre);
    if (!counts) confusion.set(genre, (counts = { tp: 0, fp: 0, fn: 0, labelled: 0 }));
    return counts;
  };
  for (const score of scores) {
    const truth = new Set(score.genres);
    const predicted = new Set(score.predicted);
    for (const genre of truth) {
      entry(genre).labelled += 1;
      if (predicted.has(genre)) entry(genre).tp += 1;
      else entry(genre).fn += 1;
    }
    for (const genre of predicted) if (!truth.has(genre)) entry(genre).fp += 1;
  }

  const queryMetrics = METRICS.filter((m): m is QueryMetric => m !== 'vote_f1');
  const perGenre: Record<string, GenreRow> = {};
  const genres = new Set([...groups.keys(), ...[...confusion].filter(([, c]) => c.labelled > 0).map(([g]) => g)]);
  for (const genre of [...genres].sort()) {
    const group = groups.get(genre) ?? [];
    const counts = confusion.get(genre);
    const metrics = {} as MetricValues;
    for (const metric of queryMetrics) metrics[metric] = mean(group.map((s) => s.values[metric]));
    metrics.vote_f1 = counts && counts.labelled > 0 ? f1(counts) : null;
    perGenre[genre] = { queries: group.length, labelled: counts?.labelled ?? 0, metrics };
  }

  const micro = {} as MetricValues;
  const macro = {} as MetricValues;
  for (const metric of queryMetrics) {
    micro[metric] = mean(scores.map((s) => s.values[metric]));
    macro[metric] = mean([...groups.keys()].map((g) => perGenre[g]!.metrics[metric]));
  }
  const pooled = { tp: 0, fp: 0, fn: 0 };
  for (const counts of confusion.values()) {
    pooled.tp += counts.tp;
    pooled.fp += counts.fp;
    pooled.fn += counts.fn;
  }
  micro.vote_f1 = scores.length === 0 ? null : f1(pooled);
  macro.vote_f1 = mean(Object.values(perGenre).map((row) => (row.labelled > 0 ? row.metrics.vote_f1 : null)));
  return { queries: scores.length, micro, macro, perGenre };
}

/** Scores and summarises a set of queries under one match rule. */
export function evaluateQueries(queries: QueryOutcome[], rule: MatchRule = 'single'): Summary {
  return { ...summarise(queries.map((q) => scoreQuery(q, rule))), ranking: RANKING_KS.map((k) => rankingMetrics(queries, k)) };
}
