import { validationSummary } from '../eval/evaluate.js';
import { classifierFigures, multiHot } from '../eval/genre-classifier.js';
import { storedVectors } from '../eval/knn.js';
import { VOTE_K, type Summary } from '../eval/metrics.js';
import { classifyGenres, parseGenreHead } from '../search/genre-head.js';
import type { Services } from '../service/startup.js';
import type { ModelVersion } from '../state/models.js';

/**
 * What the gate decides on: the mAP over genres, on val, of the genre answer each model serves:
 * its genre head's where it has one, else the vote's (k = the endpoint's default).
 */
export const GATE_METRIC = `val mAP of the served genre answer (the genre head, else the vote with k=${VOTE_K})`;

export interface Verdict {
  better: boolean;
  metric: string;
  /** GATE_METRIC with `val` posters as queries (against the `train` gallery for a vote). */
  candidateScore: number;
  activeScore: number;
  /** Which answer each score is of. */
  candidateMethod: 'classifier' | 'vote';
  activeMethod: 'classifier' | 'vote';
  candidate: Summary;
  active: Summary;
}

/**
 * The retrain gate: a candidate replaces the active model only if the genre answer it would serve
 * ranks val posters better by genre (mean average precision over all their genres, the multi-label
 * label the default training uses), not merely by single-genre Recall@1 (still reported beside it).
 */
export async function compareOnValidation(services: Services, candidate: ModelVersion, active: ModelVersion): Promise<Verdict> {
  const candidateSummary = await validationSummary(services, candidate);
  const activeSummary = await validationSummary(services, active);
  const [candidateScore, candidateMethod] = await gateScore(services, candidate, candidateSummary);
  const [activeScore, activeMethod] = await gateScore(services, active, activeSummary);
  return {
    better: candidateScore > activeScore,
    metric: GATE_METRIC,
    candidateScore,
    activeScore,
    candidateMethod,
    activeMethod,
    candidate: candidateSummary,
    active: activeSummary,
  };
}

async function gateScore(services: Pick<Services, 'catalog' | 'embeddings'>, model: ModelVersion, summary: Summary): Promise<[number, 'classifier' | 'vote']> {
  const head = parseGenreHead(model.source.genre_head, model.dims);
  if (!head) return [summary.ranking.find((r) => r.k === VOTE_K)?.map ?? 0, 'vote'];
  const val = (await services.catalog.all()).filter((p) => p.split === 'val');
  const vectors = storedVectors(await services.embeddings.load(model, model.dims)).select(val, model.version);
  const classes = head.classes;
  const probabilities = val.map((_, i) => {
    const answer = classifyGenres(head, vectors.data.subarray(i * model.dims, (i + 1) * model.dims));
    const byGenre = new Map(answer.probabilities.map((p) => [p.genre, p.probability]));
    return classes.map((c) => byGenre.get(c)!);
  });
  const figures = classifierFigures({ classes, probabilities, predicted: probabilities.map((r) => r.map(() => false)) }, multiHot(val.map((p) => p.genres), classes));
  return [figures.map ?? 0, 'classifier'];
}
