import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobConflictError, type JobStore } from '../src/state/jobs.js';
import type { EvaluationStore } from '../src/state/evaluations.js';
import type { ModelRegistry, ModelVersion, VariantPolicy } from '../src/state/models.js';
import { openPool } from '../src/state/postgres/db.js';
import { PostgresEvaluationStore } from '../src/state/postgres/evaluations.js';
import { PostgresJobStore } from '../src/state/postgres/jobs.js';
import { PostgresModelRegistry } from '../src/state/postgres/models.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqliteEvaluationStore } from '../src/state/sqlite/evaluations.js';
import { SqliteJobStore } from '../src/state/sqlite/jobs.js';
import { SqliteModelRegistry } from '../src/state/sqlite/models.js';
import { ROOT } from './support/paths.js';
import { startCluster, type TestCluster } from './support/postgres.js';

/**
 * The stores that exist on both backends, held to one contract: the same calls give the same
 * answers on SQLite (a database in memory) and on PostgreSQL (a throwaway cluster on loopback, a
 * database per test).
 */
interface Stores {
  jobs: JobStore;
  models: ModelRegistry;
  evaluations: EvaluationStore;
  close(): Promise<void>;
}

let cluster: TestCluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster?.stop();
});

const backends: { name: string; open(policy?: VariantPolicy): Promise<Stores> }[] = [
  {
    name: 'SQLite',
    async open(policy) {
      const db = openDb(':memory:');
      const close = async () => void db.close();
      return { jobs: new SqliteJobStore(db), models: new SqliteModelRegistry(db, policy), evaluations: new SqliteEvaluationStore(db), close };
    },
  },
  {
    name: 'PostgreSQL',
    async open(policy) {
      const pool = await openPool(await cluster.database());
      return { jobs: new PostgresJobStore(pool), models: new PostgresModelRegistry(pool, policy), evaluations: new PostgresEvaluationStore(pool), close: () => pool.end() };
    },
  },
];

const model = (version: string, createdAt: string): Omit<ModelVersion, 'variants'> => ({
  version, precision: 'fp32', filePath: `models/${version}.onnx`, fileSha256: 'a'.repeat(64), dims: 4, inputWidth: 16, inputHeight: 24,
  inputName: 'image', outputName: 'embedding', preprocessing: { width: 16, height: 24 } as unknown as ModelVersion['preprocessing'],
  source: { format: 'marquee-model/1', note: 'ü' }, metrics: null, checkpointPath: `models/${version}.pt`, createdAt,
}); // prettier-ignore

for (const backend of backends) {
  describe(`stores on ${backend.name}`, () => {
    it('jobs: one unfinished at a time, progress merged, the end recorded once, the interrupted failed', async () => {
      const { jobs, close } = await backend.open();
      try {
        const first = await jobs.create('retrain', { epochs: 2 });
        assert.equal(first.state, 'queued');
        assert.deepEqual(first.params, { epochs: 2 });
        await assert.rejects(jobs.create('retrain', {}), JobConflictError);
        assert.equal((await jobs.unfinished())?.id, first.id);

        await jobs.mergeProgress(first.id, { stage: 'training', epoch: 1 }, 'line 1');
        await jobs.mergeProgress(first.id, { epoch: 2, loss: 0.5 }, 'line 2');
        const training = await jobs.update(first.id, { state: 'training' });
        assert.deepEqual(training.progress, { stage: 'training', epoch: 2, loss: 0.5 });
        assert.equal(training.logTail, 'line 2');
        assert.equal(training.finishedAt, null);

        const done = await jobs.update(first.id, { state: 'succeeded', modelVersion: 'ft-1', metrics: { recall: 0.3 } });
        assert.ok(done.finishedAt);
        const again = await jobs.update(first.id, { error: 'a note after the end' });
        assert.equal(again.finishedAt, done.finishedAt, 'the end is recorded once');
        assert.deepEqual([again.state, again.modelVersion, again.metrics], ['succeeded', 'ft-1', { recall: 0.3 }]);
        assert.equal(await jobs.unfinished(), null);

        const second = await jobs.create('retrain', {});
        await jobs.update(second.id, { state: 'indexing' });
        const interrupted = await jobs.failInterrupted();
        assert.deepEqual(interrupted.map((j) => [j.id, j.state, j.error]), [[second.id, 'failed', 'interrupted: the server stopped while the job was indexing']]);
        assert.deepEqual(await jobs.failInterrupted(), []);
        assert.equal((await jobs.list()).length, 2);
        assert.equal((await jobs.list(1)).length, 1);
        assert.equal(await jobs.get('job-none'), null);
        await assert.rejects(jobs.update('job-none', { state: 'failed' }), /no job job-none/);
      } finally {
        await close();
      }
    });

    it('models: registered once, each variant handed out by the policy, the active one recorded', async () => {
      const faithful = { quantization: { parity: { top8_overlap: 0.95 } } };
      const unfaithful = { quantization: { parity: { top8_overlap: 0.5 } } };
      for (const [details, served] of [[faithful, 'int8'], [unfaithful, 'fp32']] as const) {
        const { models, close } = await backend.open({ preferred: 'int8', faithfulOnly: true });
        try {
          const registered = await models.register(model('m1', '2026-01-01T00:00:00.000Z'));
          assert.deepEqual([registered.precision, registered.variants], ['fp32', ['fp32']]);
          assert.deepEqual(await models.register({ ...model('m1', '2026-01-02T00:00:00.000Z'), dims: 99 }), registered, 'a second registration is a no-op');
          await models.addVariant('m1', 'int8', 'models/m1.int8.onnx', 'b'.repeat(64), details, 'now');
          assert.equal((await models.get('m1'))?.precision, served);
          assert.deepEqual((await models.get('m1', 'int8'))?.variants, ['fp32', 'int8']);
          assert.equal((await models.get('m1', 'int8'))?.filePath, 'models/m1.int8.onnx');
          assert.deepEqual(await models.variantDetails('m1', 'int8'), details);
          assert.equal(await models.variantDetails('m1', 'nope' as 'int8'), null);
        } finally {
          await close();
        }
      }
      const { models, close } = await backend.open();
      try {
        await models.register(model('m2', '2026-01-02T00:00:00.000Z'));
        await models.register({ ...model('m1', '2026-01-01T00:00:00.000Z'), checkpointPath: null });
        assert.deepEqual((await models.list()).map((m) => m.version), ['m1', 'm2'], 'oldest first');
        assert.deepEqual((await models.files()).sort(), ['models/m1.onnx', 'models/m2.onnx', 'models/m2.pt']);
        await models.setGenreHead('m2', { genres: ['Drama'], weights: [[1, 2]] });
        await models.setMetrics('m2', { validation: { map: 0.2 } });
        const m2 = (await models.get('m2'))!;
        assert.deepEqual(m2.source, { format: 'marquee-model/1', note: 'ü', genre_head: { genres: ['Drama'], weights: [[1, 2]] } });
        assert.deepEqual(m2.metrics, { validation: { map: 0.2 } });
        assert.equal(await models.active(), null);
        await models.activate('m2', 'now');
        await models.activate('m1', 'later');
        assert.equal((await models.active())?.version, 'm1');
        assert.equal(await models.get('none'), null);
      } finally {
        await close();
      }
    });

    it('evaluations: the latest of each version, its document kept byte for byte', async () => {
      const { models, evaluations, close } = await backend.open();
      try {
        await models.register(model('m1', 'now'));
        assert.equal(await evaluations.latest('m1'), null);
        const document = '{"b": 1,  "a": 0.10000000000000001}\n';
        await evaluations.put('m1', 'first', '{}', '# one', 'fp-1');
        await evaluations.put('m1', 'second', document, '# two', 'fp-2');
        assert.deepEqual(await evaluations.latest('m1'), { modelVersion: 'm1', createdAt: 'second', document, markdown: '# two', catalogFingerprint: 'fp-2' });
        await assert.rejects(evaluations.put('unknown', 'now', '{}', '', 'fp'), 'an evaluation of a version that does not exist is refused');
      } finally {
        await close();
      }
    });
  });
}

describe('PostgreSQL migrations', () => {
  it('run once when several servers open the same database at once', async () => {
    const url = await cluster.database();
    const pools = await Promise.all(Array.from({ length: 4 }, () => openPool(url)));
    try {
      const { rows } = await pools[0]!.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      const files = readdirSync(join(ROOT, 'migrations', 'postgres')).filter((f) => /^\d+_.*\.sql$/.test(f));
      assert.deepEqual(rows.map((r) => r.version), files.map((f) => Number.parseInt(f, 10)).sort((a, b) => a - b));
      assert.ok(files.length >= 2);
      assert.equal((await new PostgresJobStore(pools[1]!).create('retrain', {})).state, 'queued');
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
