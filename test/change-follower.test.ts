import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ChangeFollower, type EmbeddingChange } from '../src/state/postgres/change-follower.js';
import { openPool, type Pool } from '../src/state/postgres/db.js';
import { seedEmbeddingSpace, startCluster, type TestCluster } from './support/postgres.js';

/**
 * A replica's view of the embeddings' change log on a real PostgreSQL (issue 17, step 3): every
 * committed change read once, a change committed late by a transaction that began first read
 * late rather than skipped, woken by NOTIFY, and caught by the poll when notifications are lost.
 */
let cluster: TestCluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster?.stop();
});

async function database(): Promise<{ url: string; pool: Pool }> {
  const url = await cluster.database();
  const pool = await openPool(url);
  await seedEmbeddingSpace(pool, 20);
  return { url, pool };
}

const put = (client: pg.ClientBase | Pool, key: number) =>
  client.query("INSERT INTO embeddings (model_version, precision, poster_key, vector) VALUES ('m1', 'fp32', $1, '\\x0000803f00000000')", [key]);
/** The id a write answers: its transaction's. */
const changeId = async (client: pg.ClientBase) => BigInt((await client.query<{ id: string }>('SELECT pg_current_xact_id()::text AS id')).rows[0]!.id);

describe('following the change log of PostgreSQL', () => {
  it('reads every committed change once and never passes over one that a transaction still open will commit', async () => {
    const { url, pool } = await database();
    const seen: number[] = [];
    const follower = await ChangeFollower.start(pool, { url, pollMs: 60_000, onChanges: (changes) => void seen.push(...changes.map((c) => c.key)) });
    const [early, late] = [await pool.connect(), await pool.connect()];
    try {
      await early.query('BEGIN');
      await put(early, 1);
      const earlyId = await changeId(early);
      await late.query('BEGIN');
      await put(late, 2);
      const lateId = await changeId(late);
      assert.ok(lateId > earlyId, 'the later transaction has the larger id');
      await late.query('COMMIT');
      // The later write is committed and visible, but the earlier transaction is open: nothing is read past it.
      await follower.catchUp();
      assert.deepEqual(seen, []);
      assert.ok(follower.watermark <= earlyId);
      assert.equal(await follower.waitFor(lateId, 200), false, 'not caught up to a write while an older one is open');
      const [committedLate] = await Promise.all([follower.waitFor(lateId, 5000), early.query('COMMIT')]);
      assert.equal(committedLate, true);
      assert.deepEqual(seen.sort(), [1, 2], 'both, the one committed late included');
      await put(pool, 3);
      await follower.catchUp();
      await follower.catchUp();
      assert.deepEqual(seen.sort(), [1, 2, 3], 'each change once');
      // A rolled-back write is no change.
      await early.query('BEGIN');
      await put(early, 4);
      await early.query('ROLLBACK');
      await put(pool, 5);
      await follower.catchUp();
      assert.deepEqual(seen.sort(), [1, 2, 3, 5]);
    } finally {
      early.release();
      late.release();
      await follower.stop();
      await pool.end();
    }
  });

  it('wakes on NOTIFY, and the poll catches up when the listening connection is lost', async () => {
    const { url, pool } = await database();
    const arrivals: { key: number; at: number }[] = [];
    const onChanges = (changes: EmbeddingChange[]) => void arrivals.push(...changes.map((c) => ({ key: c.key, at: performance.now() })));
    const notified = await ChangeFollower.start(pool, { url, pollMs: 60_000, onChanges });
    try {
      const started = performance.now();
      await put(pool, 10);
      for (let i = 0; i < 100 && arrivals.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(arrivals.map((a) => a.key), [10], 'woken by the notification (the poll is a minute away)');
      assert.ok(arrivals[0]!.at - started < 1000, `${(arrivals[0]!.at - started).toFixed(0)} ms`);
    } finally {
      await notified.stop();
    }
    arrivals.length = 0;
    const polled = await ChangeFollower.start(pool, { url, pollMs: 100, onChanges });
    try {
      const listeners = await pool.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'marquee-follower'");
      assert.equal(listeners.rows.length, 1);
      await pool.query('SELECT pg_terminate_backend($1)', [listeners.rows[0]!.pid]);
      await put(pool, 11);
      for (let i = 0; i < 300 && arrivals.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(arrivals.map((a) => a.key), [11], 'read by the poll');
      // And it listens again.
      for (let i = 0; i < 300; i++) {
        const again = await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'marquee-follower'");
        if (again.rows[0].n === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal((await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'marquee-follower'")).rows[0].n, 1);
    } finally {
      await polled.stop();
      await pool.end();
    }
  });
});
