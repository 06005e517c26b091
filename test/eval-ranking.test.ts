import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { averagePrecision, rankingMetrics, rocAuc } from '../src/eval/ranking.js';
import type { QueryOutcome } from '../src/eval/metrics.js';

// Reference values from scikit-learn 1.9 (average_precision_score, roc_auc_score) on the same inputs.
const scores = [0.9, 0.8, 0.8, 0.5, 0.5, 0.5, 0.1, 0.0];
const positive = [true, false, true, true, false, false, true, false];

describe('genre ranking metrics', () => {
  it('average precision and ROC AUC match scikit-learn, ties included', () => {
    assert.ok(Math.abs(averagePrecision(scores, positive) - 0.6845238095238095) < 1e-12);
    assert.ok(Math.abs(rocAuc(scores, positive) - 0.65625) < 1e-12);
  });

  it('a constant score ranks at chance: AP is the prevalence, AUC one half', () => {
    const flat = [0.3, 0.3, 0.3, 0.3, 0.3];
    const labels = [true, false, false, true, false];
    assert.ok(Math.abs(averagePrecision(flat, labels) - 0.4) < 1e-12);
    assert.equal(rocAuc(flat, labels), 0.5);
  });

  it('scores each genre by its share of the vote of the k nearest, and averages over rankable genres', () => {
    const voter = (genres: string[], similarity: number) => ({ genres, singleGenre: genres[0]!, similarity });
    const query = (genres: string[], neighbours: ReturnType<typeof voter>[]): QueryOutcome => ({
      singleGenre: genres[0]!, genres, relevant: 0, neighbours,
    });
    const queries = [
      query(['Horror'], [voter(['Horror'], 0.9), voter(['Comedy'], 0.1)]),
      query(['Comedy'], [voter(['Comedy'], 0.9), voter(['Horror'], 0.1)]),
      query(['Comedy', 'Drama'], [voter(['Comedy', 'Drama'], 0.5), voter(['Horror'], 0.4)]),
    ];
    const ranking = rankingMetrics(queries, 2);
    // Vote shares (weights (1 + s)/2): Horror .633/.367/.318 ranks its one positive first; Comedy .367/.633/.341
    // puts the negative first query between its two positives (AP 1/2 + 1/2 * 2/3, AUC 1/2); Drama is perfect.
    assert.deepEqual(Object.keys(ranking.perGenre), ['Comedy', 'Drama', 'Horror']);
    assert.ok(Math.abs(ranking.perGenre.Comedy!.ap - 5 / 6) < 1e-12);
    assert.equal(ranking.perGenre.Comedy!.auc, 0.5);
    assert.equal(ranking.perGenre.Horror!.ap, 1);
    assert.ok(Math.abs(ranking.map! - (5 / 6 + 2) / 3) < 1e-12);
    assert.ok(Math.abs(ranking.auc! - 2.5 / 3) < 1e-12);
    // With k = 1 only the nearest votes: the third query's nearest is Comedy|Drama, still perfect.
    assert.equal(rankingMetrics(queries, 1).map, 1);
    // A genre every query carries cannot be ranked and is left out.
    const all = queries.map((q) => ({ ...q, genres: [...q.genres, 'Everything'] }));
    assert.equal(rankingMetrics(all, 2).perGenre.Everything, undefined);
  });
});
