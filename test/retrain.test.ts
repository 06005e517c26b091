import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const TOKEN = 'retrain-token';
const rows = subsetRows({ train: 60, val: 20, test: 10 });
const catalogIds = new Set(rows.map((r) => r.id));
const query = readFileSync(posterPath(sharedRows().find((r) => r.split === 'test' && !catalogIds.has(r.id))!.id));
const FINAL = ['succeeded', 'failed', 'cancelled', 'rejected'];

let server: RunningServer;
let env: Record<string, string>;

async function admin(method: string, path: string, body?: unknown) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any, headers: response.headers };
}

async function waitFor(id: string, done: (job: any) => boolean, timeoutMs = 240_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await admin('GET', `/admin/jobs/${id}`);
    if (done(body)) return body;
    if (FINAL.includes(body.state)) throw new Error(`job ${id} ended ${body.state} first: ${body.error}\n${body.log_tail ?? ''}`);
    if (Date.now() > deadline) throw new Error(`job ${id} stuck: ${JSON.stringify(body)}\n${server.logs().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function neighbours(): Promise<{ version: string; hits: [string, number][] }> {
  const { status, body } = await upload(`${server.url}/posters/similar?k=5`, query);
  assert.equal(status, 200, JSON.stringify(body));
  return { version: body.model_version, hits: body.results.map((r: { id: string; distance: number }) => [r.id, r.distance]) };
}

describe('retraining through the API', () => {
  before(async () => {
    // A short lease: on PostgreSQL a killed server's job is failed once its lease lapses (SQLite's next start fails it at once).
    env = { MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN, MARQUEE_JOB_LEASE_MS: '3000' };
    server = await startServer(env);
    env.MARQUEE_DATA_DIR = server.dataDir;
  });
  after(async () => {
    await server.stop();
  });

  it('trains, passes the gate, swaps while a client keeps querying, and rolls back exactly', async (t) => {
    const before = await neighbours();

    // A client querying without pause for the whole job.
    let querying = true;
    const seen: { status: number; version: string | null }[] = [];
    const client = (async () => {
      while (querying) {
        const { status, body } = await upload(`${server.url}/posters/similar?k=5`, query);
        seen.push({ status, version: body?.model_version ?? null });
      }
    })();

    const started = await admin('POST', '/admin/retrain', { mode: 'head', epochs: 2, force: true });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    assert.equal(started.headers.get('location'), `/admin/jobs/${started.body.id}`);
    const again = await admin('POST', '/admin/retrain', { mode: 'head', epochs: 1 });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'job_running');

    const states = new Set<string>();
    const job = await waitFor(started.body.id, (j) => {
      states.add(j.state);
      return FINAL.includes(j.state);
    });
    assert.equal(job.state, 'succeeded', `${job.error}\n${job.log_tail}`);
    // Let the client run on until it has been answered by the new model (bounded).
    for (let i = 0; i < 200 && !seen.some((s) => s.version === job.model_version); i++) await new Promise((r) => setTimeout(r, 25));
    querying = false;
    await client;
    assert.ok(states.has('training'), `states seen: ${[...states]}`);
    assert.equal(job.progress.epochs, 2);
    assert.ok(job.progress.last_validation, 'validation figures were reported during training');
    assert.equal(typeof job.metrics.candidateScore, 'number');
    assert.equal(typeof job.metrics.activeScore, 'number');
    // the trained model carries a genre head, and the gate judged it by the head (the test base model has none: its vote)
    assert.deepEqual([job.metrics.candidateMethod, job.metrics.activeMethod], ['classifier', 'vote']);
    assert.match(job.model_version, /^ft-[0-9a-f]{12}$/);
    assert.equal(existsSync(join(server.dataDir, 'jobs', job.id)), false, 'the job removed its working files');

    const failures = seen.filter((s) => s.status !== 200);
    t.diagnostic(`${seen.length} queries during the job, ${failures.length} failed`);
    assert.ok(seen.length >= 5, `the client ran throughout (${seen.length} queries)`);
    assert.deepEqual(failures, []);
    const after = await neighbours();
    assert.equal(after.version, job.model_version);
    assert.ok(seen.some((s) => s.version === before.version) && seen.some((s) => s.version === job.model_version));

    const models = (await admin('GET', '/admin/models')).body;
    assert.equal(models.active, job.model_version);
    assert.equal(models.models.length, 2);
    assert.ok(models.models.every((m: any) => m.metrics?.validation), 'both versions carry their validation figures');

    const rollback = await admin('POST', `/admin/models/${before.version}/activate`);
    assert.equal(rollback.status, 200, JSON.stringify(rollback.body));
    assert.equal(rollback.body.active, true);
    assert.deepEqual(await neighbours(), before, 'rollback restores the previous answers exactly');
  });

  it('cancels a job: the training process stops and its files are removed', async () => {
    // A full-network job: each step is a real forward and backward pass, so it cannot finish first.
    const started = await admin('POST', '/admin/retrain', { mode: 'full', epochs: 1000 });
    assert.equal(started.status, 202);
    await waitFor(started.body.id, (j) => j.state === 'training' && j.progress?.stage === 'progress');
    const cancel = await admin('DELETE', `/admin/jobs/${started.body.id}`);
    assert.equal(cancel.status, 202);
    const job = await waitFor(started.body.id, (j) => FINAL.includes(j.state), 60_000);
    assert.equal(job.state, 'cancelled');
    assert.equal(existsSync(join(server.dataDir, 'jobs', job.id)), false);
    assert.equal((await admin('DELETE', `/admin/jobs/${job.id}`)).status, 409);
    const models = (await admin('GET', '/admin/models')).body;
    assert.equal(models.models.length, 2, 'no model came of it');
  });

  it('a server killed mid-job restarts with the active model and the job marked interrupted', async () => {
    const active = (await admin('GET', '/admin/models')).body.active;
    const started = await admin('POST', '/admin/retrain', { mode: 'head', epochs: 1000 });
    await waitFor(started.body.id, (j) => j.state === 'training');
    server.child.kill('SIGKILL');
    await server.stop();
    server = await startServer(env);
    const job = await waitFor(started.body.id, (j) => j.state === 'failed', 20_000);
    assert.match(job.error, /interrupted/);
    assert.equal((await admin('GET', '/admin/models')).body.active, active);
    assert.equal((await neighbours()).version, active);
    assert.equal(existsSync(join(server.dataDir, 'jobs')), false);
  });
});
