import { averagePrecision, rocAuc } from './ranking.js';

/**
 * The genre answer as a classifier, whatever produced it (a model's genre head, the neighbours'
 * vote, a head trained here on colour histograms, genre prevalence): per query a probability for
 * every genre and a predicted set. Figures: mAP and mean AUC per genre (the genres with a positive
 * and a negative query), micro and macro F1 of the predicted sets, and the expected calibration
 * error over every (query, genre) pair, as training/genre_head.py computes them.
 *
 * `fitLogisticHead` trains the baselines' head the way training/genre_head.py trains a model's
 * (per-genre logistic regression with an L2 penalty chosen on val, Platt scaling and F1 thresholds
 * on val), by plain gradient descent: the histogram gets the same chance as the embedding.
 */

export interface GenreScores {
  classes: string[];
  /** [queries][classes] */
  probabilities: number[][];
  predicted: boolean[][];
}

export interface ClassifierFigures {
  map: number | null;
  auc: number | null;
  f1Micro: number;
  f1Macro: number | null;
  ece: number;
}

export const ECE_BINS = 15;
const L2_GRID = [1e-4, 1e-3, 1e-2];
const THRESHOLDS = Array.from({ length: 94 }, (_, i) => Math.round((0.02 + i * 0.01) * 100) / 100);
const MIN_THRESHOLD_POSITIVES = 5;

export function multiHot(genres: string[][], classes: string[]): boolean[][] {
  return genres.map((g) => classes.map((c) => g.includes(c)));
}

const f1 = (tp: number, fp: number, fn: number) => (tp ? (2 * tp) / (2 * tp + fp + fn) : 0);

function counts(predicted: boolean[], truth: boolean[]): [number, number, number] {
  let tp = 0, fp = 0, fn = 0; // prettier-ignore
  predicted.forEach((p, i) => {
    if (p && truth[i]) tp++;
    else if (p) fp++;
    else if (truth[i]) fn++;
  });
  return [tp, fp, fn];
}

export function classifierFigures(scores: GenreScores, truth: boolean[][]): ClassifierFigures {
  const column = <T>(rows: T[][], c: number) => rows.map((r) => r[c]!);
  const ranked = scores.classes.map((_, c) => c).filter((c) => {
    const pos = truth.filter((t) => t[c]).length;
    return pos > 0 && pos < truth.length;
  });
  const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
  const aps = ranked.map((c) => averagePrecision(column(scores.probabilities, c), column(truth, c)));
  const aucs = ranked.map((c) => rocAuc(column(scores.probabilities, c), column(truth, c)));
  const pooled = counts(scores.predicted.flat(), truth.flat());
  const macro = ranked.map((c) => f1(...counts(column(scores.predicted, c), column(truth, c))));
  return { map: mean(aps), auc: mean(aucs), f1Micro: f1(...pooled), f1Macro: mean(macro), ece: calibrationError(scores.probabilities.flat(), truth.flat()) };
}

/** Share-weighted mean |mean probability − positive rate| over ECE_BINS equal-width bins. */
export function calibrationError(probabilities: number[], truth: boolean[]): number {
  const sums = Array.from({ length: ECE_BINS }, () => ({ n: 0, p: 0, y: 0 }));
  probabilities.forEach((p, i) => {
    const bin = sums[Math.min(ECE_BINS - 1, Math.floor(p * ECE_BINS))]!;
    bin.n++;
    bin.p += p;
    bin.y += truth[i] ? 1 : 0;
  });
  return sums.reduce((total, b) => total + (b.n ? Math.abs(b.p / b.n - b.y / b.n) * b.n : 0), 0) / probabilities.length;
}

/** Thresholds maximising each genre's F1 (micro F1's one threshold for genres with few positives). */
export function chooseThresholds(probabilities: number[][], truth: boolean[][]): number[] {
  const classes = truth[0]?.length ?? 0;
  const best = (score: (t: number) => number) => THRESHOLDS.reduce((a, t) => (score(t) > score(a) ? t : a), THRESHOLDS[0]!);
  const shared = best((t) => f1(...counts(probabilities.flat().map((p) => p >= t), truth.flat())));
  return Array.from({ length: classes }, (_, c) => {
    const p = probabilities.map((r) => r[c]!);
    const y = truth.map((r) => r[c]!);
    if (y.filter(Boolean).length < MIN_THRESHOLD_POSITIVES) return shared;
    return best((t) => f1(...counts(p.map((v) => v >= t), y)));
  });
}

export function predictedBy(probabilities: number[][], thresholds: number[]): boolean[][] {
  return probabilities.map((row) => row.map((p, c) => p >= thresholds[c]!));
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

interface Linear {
  weight: Float64Array; // [classes × dims]
  bias: Float64Array;
}

function logits(model: Linear, x: Float32Array, n: number, dims: number, classes: number): Float64Array {
  const out = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < classes; c++) {
      let z = model.bias[c]!;
      const w = c * dims;
      const row = i * dims;
      for (let d = 0; d < dims; d++) z += model.weight[w + d]! * x[row + d]!;
      out[i * classes + c] = z;
    }
  }
  return out;
}

/** Mean cross-entropy + l2·|W|² by full-batch Adam (every genre at once). */
function fitLinear(x: Float32Array, y: boolean[][], dims: number, l2: number, steps = 300, rate = 0.05): Linear {
  const n = y.length;
  const classes = y[0]!.length;
  const weight = new Float64Array(classes * dims);
  const bias = new Float64Array(classes).map((_, c) => {
    const rate_ = Math.min(1 - 1e-4, Math.max(1e-4, y.filter((r) => r[c]).length / n));
    return Math.log(rate_ / (1 - rate_));
  });
  const params = [weight, bias];
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  for (let step = 1; step <= steps; step++) {
    const z = logits({ weight, bias }, x, n, dims, classes);
    const gw = new Float64Array(weight.length);
    const gb = new Float64Array(classes);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < classes; c++) {
        const g = (sigmoid(z[i * classes + c]!) - (y[i]![c] ? 1 : 0)) / n;
        gb[c]! += g;
        const w = c * dims;
        const row = i * dims;
        for (let d = 0; d < dims; d++) gw[w + d]! += g * x[row + d]!;
      }
    }
    for (let k = 0; k < weight.length; k++) gw[k]! += (2 * l2 * weight[k]!) / classes;
    [gw, gb].forEach((grad, p) => {
      for (let k = 0; k < grad.length; k++) {
        m[p]![k] = 0.9 * m[p]![k]! + 0.1 * grad[k]!;
        v[p]![k] = 0.999 * v[p]![k]! + 0.001 * grad[k]! ** 2;
        params[p]![k]! -= (rate * (m[p]![k]! / (1 - 0.9 ** step))) / (Math.sqrt(v[p]![k]! / (1 - 0.999 ** step)) + 1e-8);
      }
    });
  }
  return { weight, bias };
}

/** Per genre (a, c) of sigmoid(a·logit + c) by Newton's method, pulled towards (1, 0) as training/genre_head.py does. */
function fitPlatt(z: number[], y: boolean[], prior = 1): [number, number] {
  let a = 1;
  let c = 0;
  for (let it = 0; it < 50; it++) {
    let ga = 2 * prior * (a - 1), gc = 2 * prior * c, haa = 2 * prior, hac = 0, hcc = 2 * prior; // prettier-ignore
    z.forEach((zi, i) => {
      const p = sigmoid(a * zi + c);
      const r = p - (y[i] ? 1 : 0);
      const w = p * (1 - p);
      ga += r * zi;
      gc += r;
      haa += w * zi * zi;
      hac += w * zi;
      hcc += w;
    });
    const det = haa * hcc - hac * hac;
    if (Math.abs(det) < 1e-12) break;
    const da = (hcc * ga - hac * gc) / det;
    const dc = (haa * gc - hac * ga) / det;
    a -= da;
    c -= dc;
    if (Math.abs(da) + Math.abs(dc) < 1e-9) break;
  }
  return [a, c];
}

export interface LinearHead {
  classes: string[];
  dims: number;
  predict(x: Float32Array, n: number): GenreScores;
  l2: number;
}

/**
 * A calibrated logistic head on any features: fitted on train, L2 chosen on val by mAP, calibrated and
 * thresholded on val; null when no genre has both a positive and a negative val poster to choose by.
 */
export function fitLogisticHead(
  train: { x: Float32Array; y: boolean[][] },
  val: { x: Float32Array; y: boolean[][] },
  dims: number,
  classes: string[],
): LinearHead | null {
  const raw = (model: Linear, x: Float32Array, n: number) => {
    const z = logits(model, x, n, dims, classes.length);
    return Array.from({ length: n }, (_, i) => Array.from(z.subarray(i * classes.length, (i + 1) * classes.length)));
  };
  let best: { score: number; l2: number; model: Linear } | null = null;
  for (const l2 of L2_GRID) {
    const model = fitLinear(train.x, train.y, dims, l2);
    const probabilities = raw(model, val.x, val.y.length).map((r) => r.map(sigmoid));
    const { map } = classifierFigures({ classes, probabilities, predicted: probabilities.map((r) => r.map(() => false)) }, val.y);
    if (map !== null && (!best || map > best.score)) best = { score: map, l2, model };
  }
  if (!best) return null;
  const { model, l2 } = best;
  const valZ = raw(model, val.x, val.y.length);
  const platt = classes.map((_, c) => fitPlatt(valZ.map((r) => r[c]!), val.y.map((r) => r[c]!)));
  const calibrate = (z: number[][]) => z.map((r) => r.map((v, c) => sigmoid(platt[c]![0] * v + platt[c]![1])));
  const thresholds = chooseThresholds(calibrate(valZ), val.y);
  return {
    classes,
    dims,
    l2,
    predict(x, n) {
      const probabilities = calibrate(raw(model, x, n));
      return { classes, probabilities, predicted: predictedBy(probabilities, thresholds) };
    },
  };
}
