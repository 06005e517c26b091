import { validationSummary } from '../eval/evaluate.js';
import { VOTE_K, type Summary } from '../eval/metrics.js';
import type { Services } from '../service/startup.js';
import type { ModelVersion } from '../state/models.js';

/** What the gate decides on: the genre vote's mAP over genres (k = the endpoint's default) on val. */
export const GATE_METRIC = `vote mAP (k=${VOTE_K})`;

export interface Verdict {
  better: boolean;
  metric: string;
  /** GATE_METRIC with `val` posters as queries against the `train` gallery. */
  candidateScore: number;
  activeScore: number;
  candidate: Summary;
  active: Summary;
}

/**
 * The retrain gate: a candidate replaces the active model only if the genre vote ranks val posters
 * better by genre (mean average precision over all their genres, the multi-label label the default
 * training uses), not merely by single-genre Recall@1 (still reported beside it).
 */
export function compareOnValidation(services: Services, candidate: ModelVersion, active: ModelVersion): Verdict {
  const candidateSummary = validationSummary(services, candidate);
  const activeSummary = validationSummary(services, active);
  const candidateScore = gateScore(candidateSummary);
  const activeScore = gateScore(activeSummary);
  return {
    better: candidateScore > activeScore,
    metric: GATE_METRIC,
    candidateScore,
    activeScore,
    candidate: candidateSummary,
    active: activeSummary,
  };
}

function gateScore(summary: Summary): number {
  return summary.ranking.find((r) => r.k === VOTE_K)?.map ?? 0;
}
