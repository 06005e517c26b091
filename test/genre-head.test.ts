import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { testModelWithHeadDir } from './support/model.js';
import { PYTHON, ROOT } from './support/paths.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 100, val: 10, test: 10 });
const ids = new Set(rows.map((r) => r.id));
const outsider = sharedRows().find((r) => r.split === 'test' && !ids.has(r.id))!;
let server: RunningServer;
let modelDir: string;

interface Probability {
  genre: string;
  probability: number;
  threshold: number;
  predicted: boolean;
}

/** The training package's own head applied to an embedding (training/genre_head.py `probabilities`). */
function pythonProbabilities(dir: string, embedding: number[]): Record<string, number> {
  const script =
    'import json, sys\nfrom training.genre_head import probabilities\n' +
    'head = json.load(open(sys.argv[1]))["genre_head"]\n' +
    'p = probabilities(head, [json.loads(sys.argv[2])])[0]\n' +
    'print(json.dumps(dict(zip(head["classes"], map(float, p)))))';
  return JSON.parse(execFileSync(PYTHON, ['-c', script, join(dir, 'model.json'), JSON.stringify(embedding)], { cwd: ROOT, encoding: 'utf8' }));
}

describe('the genre head: calibrated probabilities and a predicted set, the vote beside them', () => {
  before(async () => {
    modelDir = testModelWithHeadDir();
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: modelDir });
  });
  after(async () => {
    assert.equal(await server.stop(), 0, 'clean shutdown');
  });

  it('answers with the classifier by default: every genre, calibrated, thresholds from the model', async () => {
    const bytes = readFileSync(posterPath(outsider.id));
    const { status, body } = await upload(`${server.url}/posters/genre?k=5`, bytes);
    assert.equal(status, 200);
    assert.equal(body.method, 'classifier');
    const head = JSON.parse(readFileSync(join(modelDir, 'model.json'), 'utf8')).genre_head;
    const probabilities = body.probabilities as Probability[];
    assert.deepEqual(probabilities.map((p) => p.genre).sort(), [...head.classes].sort());
    probabilities.forEach((p, i) => {
      assert.ok(p.probability > 0 && p.probability < 1);
      if (i > 0) assert.ok(p.probability <= probabilities[i - 1]!.probability, 'most probable first');
      assert.equal(p.threshold, Math.fround(head.thresholds[head.classes.indexOf(p.genre)]));
      assert.equal(p.predicted, p.probability >= p.threshold);
    });
    assert.deepEqual(body.predicted, probabilities.filter((p) => p.predicted).map((p) => p.genre));
    assert.deepEqual(body.prediction, { genre: probabilities[0]!.genre, score: probabilities[0]!.probability });
    // the vote stays, as the explanation
    assert.equal(body.neighbors.length, 5);
    assert.ok(Math.abs(body.scores.reduce((s: number, x: { score: number }) => s + x.score, 0) - 1) < 1e-9);

    // the same probabilities as the training package computes from the served embedding
    const embedding = (await upload(`${server.url}/posters/embed`, bytes)).body.embedding as number[];
    const expected = pythonProbabilities(modelDir, embedding);
    for (const p of probabilities) assert.ok(Math.abs(p.probability - expected[p.genre]!) < 1e-5, `${p.genre}: ${p.probability} vs ${expected[p.genre]}`);
  });

  it('answers the vote when asked, and for a catalog poster by id without its own vote', async () => {
    const bytes = readFileSync(posterPath(outsider.id));
    const vote = (await upload(`${server.url}/posters/genre?method=vote`, bytes)).body;
    assert.equal(vote.method, 'vote');
    assert.equal(vote.probabilities, null);
    assert.equal(vote.prediction.genre, vote.scores[0].genre);
    const top = vote.scores[0].score;
    assert.deepEqual(vote.predicted, vote.scores.filter((s: { score: number }) => s.score > 0 && s.score >= top / 2).map((s: { genre: string }) => s.genre));

    const member = rows[3]!;
    const byId = (await (await fetch(`${server.url}/posters/${member.id}/genre`)).json()) as Record<string, unknown> & { neighbors: { id: string }[] };
    assert.equal(byId.method, 'classifier');
    assert.ok(byId.neighbors.every((n) => n.id !== member.id));
    const uploaded = (await upload(`${server.url}/posters/genre`, readFileSync(posterPath(member.id)))).body;
    assert.deepEqual(byId.probabilities, uploaded.probabilities, 'the same answer as uploading its image');
    const bad = await fetch(`${server.url}/posters/${member.id}/genre?method=oracle`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_request');
  });
});
