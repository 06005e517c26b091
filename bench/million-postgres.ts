/**
 * A restart at a million posters on PostgreSQL (issue 17: "time from its restart to ready … at
 * 1,000,000 posters, target <= 60 s"):
 *
 *   npm run build && node --import tsx bench/million-postgres.ts [posters=1000000] [dir] > bench/results/million-postgres.md
 *
 * The synthetic catalog of bench/million.ts (bench/lib/synthetic.ts), written into a PostgreSQL 15
 * cluster kept under `dir` (Debian's binaries, loopback, fsync off like the tests' clusters) with
 * bulk inserts; the embedding change log is filled by its own triggers, as for any write. Kept
 * between runs, as is server A's data dir and the shared directory: a run that finds them goes
 * straight to the timed part.
 *
 * 1. Server A (`marquee serve`, the shipped default model, MARQUEE_INDEX_SCALAR=f16 as a million
 *    wants, bench/results/million.md) starts for the first time: it reads every embedding, builds
 *    the index and publishes its checkpoint to the shared directory.
 * 2. While A is down, other servers write: 1,000 posters get new embeddings (straight into the table).
 * 3. A restarts: timed from spawn to /ready answering 200, with what its log says it did.
 * 4. A new server B, with an empty data dir and the same shared directory, starts: the replica a
 *    person adds, or one whose disk was lost. Timed the same way.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Pool, openPool } from '../src/state/postgres/db.js';
import { putEmbeddings } from '../src/state/postgres/embeddings.js';
import { PostgresModelRegistry } from '../src/state/postgres/models.js';
import { startCluster } from '../test/support/postgres.js';
import { ROOT } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { startServer, type BenchServer } from './lib/server.js';
import { nowMs } from './lib/stats.js';
import { DIMS, synthesise } from './lib/synthetic.js';

const N = Number(process.argv[2] ?? 1_000_000);
const DIR = process.argv[3] ?? '/tmp/marquee-million-pg';
const SCALAR = 'f16';
const CHANGES_WHILE_DOWN = 1000;
const BATCH = 5000;

const log = (line: string) => process.stderr.write(`[million-pg ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

const machine = machineInfo();
mkdirSync(DIR, { recursive: true });
const cluster = await startCluster({ keepIn: join(DIR, 'pg') });
process.once('exit', () => cluster.stopNow());
const databaseUrl = await cluster.database('marquee');
const sharedDir = join(DIR, 'shared');
const serverEnv = (dataDir: string): Record<string, string> => ({
  MARQUEE_DATA_DIR: dataDir,
  MARQUEE_CATALOG: '',
  MARQUEE_BASE_WEIGHTS: 'none',
  MARQUEE_INDEX_SCALAR: SCALAR,
  MARQUEE_DATABASE_URL: databaseUrl,
  MARQUEE_SHARED_DIR: sharedDir,
  LOG_LEVEL: 'info',
});
const dirA = join(DIR, 'server-a');

interface Written {
  posters: number;
  seconds: number;
}
const writtenFile = join(DIR, 'catalog-written.json');
if (!existsSync(writtenFile)) {
  // An empty service migrates the database and registers the shipped default model.
  await (await startServer(ROOT, serverEnv(dirA))).stop();
  const pool = await openPool(databaseUrl);
  const model = (await new PostgresModelRegistry(pool).active())!;
  if (model.dims !== DIMS) throw new Error(`the default model has ${model.dims} dims`);
  log(`synthesising ${N} posters`);
  const data = synthesise(N);
  const t0 = nowMs();
  const now = new Date().toISOString();
  for (let start = 0; start < N; start += BATCH) {
    const rows = Array.from({ length: Math.min(BATCH, N - start) }, (_, j) => start + j);
    const id = (i: number) => `m${String(i).padStart(7, '0')}`;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const { rows: keys } = await client.query<{ key: string }>(
        `INSERT INTO posters (id, title, year, release_date, genres, single_genre, split, image_path, image_sha256, pixel_sha256, width, height, imported_at)
         SELECT id, 'Synthetic film ' || substr(id, 2), year, year || '-06-01', genres::jsonb, single_genre, split, 'images/' || id || '.jpg',
                rpad(id, 64, '0'), rpad(id, 64, '1'), 342, 513, $6
         FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[]) AS u(id, year, genres, single_genre, split)
         ORDER BY id RETURNING key`,
        [
          rows.map(id), rows.map((i) => data.years[i]!), rows.map((i) => JSON.stringify(data.genres[i])), rows.map((i) => [...data.genres[i]!].sort()[0]!),
          rows.map((i) => (i % 10 === 0 ? 'test' : i % 10 === 1 ? 'val' : 'train')), now,
        ], // prettier-ignore
      );
      const keyOf = keys.map((k) => Number(k.key)).sort((a, b) => a - b);
      await client.query('INSERT INTO poster_genres (poster_key, genre) SELECT k, g FROM unnest($1::bigint[], $2::text[]) AS u(k, g)', [
        rows.flatMap((i, j) => data.genres[i]!.map(() => keyOf[j]!)),
        rows.flatMap((i) => data.genres[i]!),
      ]);
      // Perceptual hashes as a real catalog has them, so that no server goes looking for the synthetic posters' images.
      await client.query(
        `INSERT INTO poster_hashes (poster_key, pixel_sha256, whole, trimmed, crop_95, crop_85)
         SELECT key, pixel_sha256, md5(id) || md5(id || 'w'), md5(id || 't') || md5(id || 'T'), md5(id || 'c') || md5(id || 'C'), md5(id || 'd') || md5(id || 'D')
         FROM posters WHERE key = ANY($1::bigint[])`,
        [keyOf],
      );
      await putEmbeddings(client, model, rows.map((i, j) => ({ key: keyOf[j]!, vector: data.vectors.subarray(i * DIMS, (i + 1) * DIMS) })));
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    if (start % 100_000 === 0) log(`posters ${start}/${N}`);
  }
  const written: Written = { posters: N, seconds: (nowMs() - t0) / 1000 };
  await pool.query('VACUUM ANALYZE');
  await pool.end();
  writeFileSync(writtenFile, JSON.stringify(written));
  log(`catalog written in ${written.seconds.toFixed(0)} s`);
}
const written = JSON.parse(readFileSync(writtenFile, 'utf8')) as Written;

const pool = await openPool(databaseUrl);
const databaseBytes = Number((await pool.query<{ n: string }>('SELECT pg_database_size(current_database()) AS n')).rows[0]!.n);

interface Start {
  readySeconds: number;
  index: { vectors?: number; rebuilt?: boolean; replayed?: number; ms?: number };
  adopted: boolean;
  rss: number;
}
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
async function timedStart(dataDir: string, timeoutMs: number, name: string): Promise<Start> {
  const logFile = join(DIR, `${name}.log`);
  const server: BenchServer = await startServer(ROOT, serverEnv(dataDir), timeoutMs, logFile);
  const rss = rssOf(server.pid);
  await server.stop();
  const lines = readFileSync(logFile, 'utf8').split('\n');
  const ready = lines.find((l) => l.includes('"vector index ready"'));
  return {
    readySeconds: server.readySeconds,
    index: ready ? (JSON.parse(ready) as Start['index']) : {},
    adopted: lines.some((l) => l.includes('index checkpoint taken from the shared directory')),
    rss,
  };
}

let first: Start | null = null;
const builtFile = join(DIR, 'first-start.json');
if (!existsSync(builtFile)) {
  log('server A: first start (reads every embedding, builds the index)');
  rmSync(join(sharedDir, 'snapshots'), { recursive: true, force: true });
  first = await timedStart(dirA, 4 * 3_600_000, 'a-first-start');
  writeFileSync(builtFile, JSON.stringify(first));
}
first ??= JSON.parse(readFileSync(builtFile, 'utf8')) as Start;

log(`${CHANGES_WHILE_DOWN} posters re-embedded while A is down`);
const model = (await new PostgresModelRegistry(pool).active())!;
await rewriteSome(pool, CHANGES_WHILE_DOWN);
log('server A: restart');
const restart = await timedStart(dirA, 3_600_000, 'a-restart');
log('server B: a new server, the shared directory its only files');
const dirB = join(DIR, 'server-b');
rmSync(dirB, { recursive: true, force: true });
const fresh = await timedStart(dirB, 3_600_000, 'b-start');
rmSync(dirB, { recursive: true, force: true });
await pool.end();

async function rewriteSome(pool: Pool, count: number): Promise<void> {
  const { rows } = await pool.query<{ key: string }>('SELECT key FROM posters ORDER BY random() LIMIT $1', [count]);
  const data = synthesise(count);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await putEmbeddings(client, model, rows.map((r, i) => ({ key: Number(r.key), vector: data.vectors.subarray(i * DIMS, (i + 1) * DIMS) })));
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

const row = (name: string, s: Start) =>
  `| ${name} | **${s.readySeconds.toFixed(1)}** | ${s.index.ms !== undefined ? (s.index.ms / 1000).toFixed(1) : '?'} | ${s.index.rebuilt ? 'built' : s.adopted ? 'the shared checkpoint' : 'its own checkpoint'} | ${s.index.replayed ?? '?'} | ${mib(s.rss)} |`;
process.stdout.write(
  [
    `### \`node --import tsx bench/million-postgres.ts ${N}\`, ${new Date().toISOString()}`,
    '',
    `${machine.cpuModel} (${machine.vectorUnits}), ${machine.cores} cores, Node ${machine.node}, load average at the start ${machine.loadAverageAtStart.toFixed(2)}. ${N.toLocaleString('en')} synthetic posters (bench/lib/synthetic.ts) in PostgreSQL 15 on loopback ` +
      `(database ${mib(databaseBytes)} MiB; written by bulk inserts in ${written.seconds.toFixed(0)} s), index ${SCALAR}, ` +
      `${CHANGES_WHILE_DOWN.toLocaleString('en')} posters re-embedded while A was down. Seconds from spawn to /ready answering 200:`,
    '',
    '| start | ready (s) | index ready (s, its log) | index from | changes replayed | RSS after ready (MiB) |',
    '| --- | ---: | ---: | --- | ---: | ---: |',
    row('A, first start (once, kept from the run that built it)', first),
    row('A, restart', restart),
    row('B, a new server (empty data dir)', fresh),
    '',
    'Target: a restart ready in <= 60 s at 1,000,000 posters.',
    '',
  ].join('\n'),
);
process.exit(0);
