import { validationSummary } from '../eval/evaluate.js';
import type { Summary } from '../eval/metrics.js';
import type { Services } from '../service/startup.js';
import type { ModelVersion } from '../state/models.js';

export interface Verdict {
  better: boolean;
  /** Macro Recall@1 with `val` posters as queries against the `train` gallery. */
  candidateScore: number;
  activeScore: number;
  candidate: Summary;
  active: Summary;
}

/** The retrain gate: a candidate replaces the active model only if it is better on macro Recall@1 on val. */
export function compareOnValidation(services: Services, candidate: ModelVersion, active: ModelVersion): Verdict {
  const candidateSummary = validationSummary(services, candidate);
  const activeSummary = validationSummary(services, active);
  const candidateScore = candidateSummary.macro['recall@1'] ?? 0;
  const activeScore = activeSummary.macro['recall@1'] ?? 0;
  return { better: candidateScore > activeScore, candidateScore, activeScore, candidate: candidateSummary, active: activeSummary };
}
