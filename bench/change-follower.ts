/**
 * How soon a write on PostgreSQL reaches every replica (issue 17, step 3):
 *
 *   nice node --import tsx bench/change-follower.ts > bench/results/change-follower.md
 *
 * A throwaway PostgreSQL 15 cluster on loopback (test/support/postgres.ts), three replicas' followers
 * (ChangeFollower, each with its own pool and its LISTEN connection, the poll at its default 1 s)
 * and writers that commit one embedding change per transaction. Timed: from the writer's COMMIT
 * returning to each follower's onChanges holding the change; no vector is read or indexed, so this
 * is the log's part of "searchable on every replica". Scenarios: one writer, one write every 5 ms;
 * eight writers at once, as fast as they can; and a writer holding a transaction open 200 ms while
 * others commit (their changes wait for it: the horizon does not pass an open transaction).
 */
import { openPool, type Pool } from '../src/state/postgres/db.js';
import { ChangeFollower } from '../src/state/postgres/change-follower.js';
import { seedEmbeddingSpace, startCluster } from '../test/support/postgres.js';
import { machineInfo } from './lib/machine.js';
import { nowMs, summarise } from './lib/stats.js';

const WRITES = Number(process.env.FOLLOWER_WRITES ?? 500);
const REPLICAS = 3;
const log = (line: string) => process.stderr.write(`[change-follower] ${line}\n`);

const cluster = await startCluster();
const url = await cluster.database();
const writer = await openPool(url);
await seedEmbeddingSpace(writer, WRITES);

/** When each replica first held each key's change. */
const seen = Array.from({ length: REPLICAS }, () => new Map<number, number>());
const pools: Pool[] = [];
const followers: ChangeFollower[] = [];
for (let r = 0; r < REPLICAS; r++) {
  const pool = await openPool(url);
  pools.push(pool);
  followers.push(
    await ChangeFollower.start(pool, {
      url,
      onChanges: (changes) => {
        const at = nowMs();
        for (const { key } of changes) if (!seen[r]!.has(key)) seen[r]!.set(key, at);
      },
    }),
  );
}

const write = async (pool: Pool, key: number, holdMs = 0): Promise<number> => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("INSERT INTO embeddings (model_version, precision, poster_key, vector) VALUES ('m1', 'fp32', $1, '\\x0000803f00000000')", [key]);
    if (holdMs) await new Promise((resolve) => setTimeout(resolve, holdMs));
    await client.query('COMMIT');
    return nowMs();
  } finally {
    client.release();
  }
};

const waitSeen = async (keys: number[]) => {
  for (let i = 0; i < 1000 && !keys.every((key) => seen.every((s) => s.has(key))); i++) await new Promise((resolve) => setTimeout(resolve, 5));
};
const lags = (committed: Map<number, number>) => {
  const out: number[] = [];
  for (const [key, at] of committed) for (const s of seen) out.push(s.get(key)! - at);
  return out;
};
const ms = (samples: number[]) => {
  const s = summarise(samples);
  return `${s.median.toFixed(1)} / **${s.p99.toFixed(1)}** / ${s.max.toFixed(1)}`;
};

const machine = machineInfo();
const out = [
  `## A write's change reaching three replicas' followers: \`nice node --import tsx bench/change-follower.ts\`, ${machine.date}`,
  '',
  `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, PostgreSQL 15 on loopback (fsync off), the database, the writers and the three followers on this one machine; load average at the start ${machine.loadAverageAtStart.toFixed(2)}.`,
  '',
  'From the writer\'s COMMIT returning to the change in each follower\'s onChanges, ms: p50 / **p99** / max, over every change and every follower.',
  '',
  '| scenario | changes | p50 / **p99** / max ms |',
  '| --- | ---: | ---: |',
];

// 1. One writer, one change every 5 ms.
let next = 1;
const single = new Map<number, number>();
log(`one writer, ${WRITES / 2} changes`);
for (let i = 0; i < WRITES / 2; i++) {
  const key = next++;
  single.set(key, await write(writer, key));
  await new Promise((resolve) => setTimeout(resolve, 5));
}
await waitSeen([...single.keys()]);
out.push(`| one writer, a change every 5 ms | ${single.size} | ${ms(lags(single))} |`);

// 2. Eight writers at once.
const burst = new Map<number, number>();
const keys = Array.from({ length: WRITES / 2 - 10 }, () => next++);
log(`eight writers, ${keys.length} changes`);
await Promise.all(
  Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; i < keys.length; i += 8) burst.set(keys[i]!, await write(writer, keys[i]!));
  }),
);
await waitSeen(keys);
out.push(`| eight writers at once, as fast as they commit | ${burst.size} | ${ms(lags(burst))} |`);

// 3. An open transaction holds the horizon: changes committed behind it wait for it.
const held = new Map<number, number>();
const slowKey = next++;
const slow = write(writer, slowKey, 200);
await new Promise((resolve) => setTimeout(resolve, 20));
for (let i = 0; i < 8; i++) {
  const key = next++;
  held.set(key, await write(writer, key));
}
const slowCommitted = await slow;
await waitSeen([...held.keys(), slowKey]);
const behind = lags(held);
out.push(`| 8 changes committed while an older transaction stays open 200 ms | ${held.size} | ${ms(behind)} |`);
const afterSlow = seen.map((s) => Math.min(...[...held.keys()].map((key) => s.get(key)!)) - slowCommitted);
out.push(
  '',
  `In the last case each follower read the 8 changes ${afterSlow.map((d) => d.toFixed(1)).join(', ')} ms after the open transaction committed, not before: a change is read once every older transaction has finished, so none is skipped (test/change-follower.test.ts).`,
  '',
);
const missing = seen.map((s) => next - 1 - s.size);
if (missing.some((n) => n > 0)) out.push(`Changes not seen: ${missing.join(', ')} per follower.`, '');

for (const follower of followers) await follower.stop();
for (const pool of [...pools, writer]) await pool.end();
await cluster.stop();
process.stdout.write(`${out.join('\n')}\n`);
