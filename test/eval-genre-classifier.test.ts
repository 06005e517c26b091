import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { seededRandom } from '../src/figures/random.js';
import { classifierFigures, fitLogisticHead } from '../src/eval/genre-classifier.js';
import { PYTHON, ROOT } from './support/paths.js';

/** Unit vectors whose genre c is present when a noisy projection on axis c is high. */
function synthetic(n: number, seed: number, dims = 12, classes = 3) {
  const random = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const x = new Float32Array(n * dims);
  const y: boolean[][] = [];
  const cut = [0.3, 0.2, 0.1];
  for (let i = 0; i < n; i++) {
    const v = Array.from({ length: dims }, gauss);
    const norm = Math.hypot(...v);
    v.forEach((value, d) => (x[i * dims + d] = value / norm));
    y.push(Array.from({ length: classes }, (_, c) => x[i * dims + c]! + 0.15 * gauss() > cut[c]!));
  }
  return { x, y };
}

describe('genres as a classifier: the baselines\' head and the figures', () => {
  it('a head trained on decodable features ranks, predicts and is calibrated on held-out queries', () => {
    const classes = ['a', 'b', 'c'];
    const head = fitLogisticHead(synthetic(1500, 1), synthetic(600, 2), 12, classes);
    assert.ok(head);
    const test = synthetic(1000, 3);
    const scores = head.predict(test.x, 1000);
    const figures = classifierFigures(scores, test.y);
    assert.ok(figures.auc! > 0.9 && figures.map! > 0.7, JSON.stringify(figures));
    assert.ok(figures.ece < 0.04, `ECE ${figures.ece}`);
    assert.ok(figures.f1Macro! > 0.6);
    // features that carry nothing: chance
    const noise = synthetic(1000, 4);
    const blind = classifierFigures(head.predict(noise.x, 1000), test.y);
    assert.ok(Math.abs(blind.auc! - 0.5) < 0.06, `AUC on unrelated features ${blind.auc}`);
  });

  it('has no head to offer when no val genre has both a positive and a negative poster', () => {
    const val = synthetic(50, 2);
    const allPositive = { x: val.x, y: val.y.map((r) => r.map(() => true)) };
    assert.equal(fitLogisticHead(synthetic(300, 1), allPositive, 12, ['a', 'b', 'c']), null);
  });

  it('computes the figures as the training package does (scikit-learn)', () => {
    const random = seededRandom(9);
    const truth = Array.from({ length: 200 }, () => [random() < 0.3, random() < 0.1, random() < 0.5]);
    const probabilities = truth.map((t) => t.map((v) => Math.min(0.999, Math.max(0.001, (v ? 0.3 : 0) + 0.7 * random()))));
    const predicted = probabilities.map((r) => r.map((p) => p >= 0.5));
    const ours = classifierFigures({ classes: ['a', 'b', 'c'], probabilities, predicted }, truth);
    const script =
      'import json, sys\nimport numpy as np\nfrom training.genre_head import head_metrics\n' +
      'p, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n' +
      'print(json.dumps(head_metrics(np.array(p), np.array(t), np.full(3, 0.5))))';
    const theirs = JSON.parse(execFileSync(PYTHON, ['-c', script, JSON.stringify(probabilities), JSON.stringify(truth.map((r) => r.map(Number)))], { cwd: ROOT, encoding: 'utf8' }));
    for (const [a, b] of [[ours.map, theirs.map], [ours.auc, theirs.auc], [ours.f1Micro, theirs.f1_micro], [ours.f1Macro, theirs.f1_macro], [ours.ece, theirs.ece]] as const) {
      assert.ok(Math.abs(a! - b) < 1e-5, `${a} vs ${b}`);
    }
  });
});
