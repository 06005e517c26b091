/**
 * /health while the server does its heaviest work (issue 15): an index rebuilt by a swap, and a
 * first retrain creating the Python environment.
 *
 *   npm run build && nice node --import tsx bench/health-during-build.ts [posters=200000] [dir] > bench/results/health-during-build.md
 *
 * Index: N synthetic posters (512-d embeddings in 1,000 clusters, as bench/million.ts makes them)
 * under two registered versions of the shipped default model; the server starts serving one, and
 * `POST /admin/models/{other}/activate` swaps to the other, whose index has never been built. GET
 * /health is sent every 10 ms without waiting for the previous answer (so that a stalled event
 * loop shows in every request it holds, not in one), from before the activation until it returns.
 * HEALTH_BEFORE_ROOT=<a checkout of the code before the build moved to a worker thread, built>
 * measures the same swap with that code too.
 *
 * Python: a server with an empty MARQUEE_VENV gets `POST /admin/retrain`; /health is probed the
 * same way while the job's progress says it is creating the Python environment, then the job is
 * cancelled (BENCH_SKIP_PYTHON=1 leaves this part out).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom } from '../src/figures/random.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import { SqliteModelRegistry } from '../src/state/sqlite/models.js';
import { makeCatalogDir, sharedRows } from '../test/support/catalog.js';
import { ROOT } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { startServer, type BenchServer } from './lib/server.js';
import { nowMs, percentile, type Summary, summarise } from './lib/stats.js';

const N = Number(process.argv[2] ?? 200_000);
const DIR = process.argv[3] ?? '/tmp/marquee-health';
const BEFORE_ROOT = process.env.HEALTH_BEFORE_ROOT;
const DIMS = 512;
const TOKEN = 'health-bench';
const log = (line: string) => process.stderr.write(`[health ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

/**
 * GET /health every `everyMs`, each sent on time whatever the earlier ones are doing (up to 100 in
 * flight: past that a tick sends nothing and counts as skipped, the server being stalled), until stopped.
 */
function probeHealth(url: string, everyMs = 10) {
  const latencies: number[] = [];
  let failures = 0;
  let skipped = 0;
  const inFlight = new Set<Promise<void>>();
  const timer = setInterval(() => {
    if (inFlight.size >= 100) {
      skipped += 1;
      return;
    }
    const started = nowMs();
    const request = fetch(`${url}/health`)
      .then(async (response) => {
        await response.arrayBuffer();
        if (response.status === 200) latencies.push(nowMs() - started);
        else failures += 1;
      })
      .catch(() => {
        failures += 1;
      })
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
  }, everyMs);
  return {
    async stop(): Promise<{ latency: Summary; p999: number; over50: number; failures: number; skipped: number }> {
      clearInterval(timer);
      await Promise.all(inFlight);
      const sorted = Float64Array.from(latencies).sort();
      return { latency: summarise(latencies), p999: percentile(sorted, 0.999), over50: latencies.filter((ms) => ms > 50).length, failures, skipped };
    },
  };
}

/** An admin request by node:http, which waits as long as it takes (fetch gives up on headers after 300 s: a swap of a million posters takes longer). */
function admin(server: BenchServer, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const request = httpRequest(
      `${server.url}${path}`,
      { method, headers: { authorization: `Bearer ${TOKEN}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) } },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** N posters and, for each version, the same embedding of each (clusters: the graph has structure to build). */
async function writeCatalog(dataDir: string, versions: string[]): Promise<void> {
  const db = openDb(join(dataDir, 'marquee.db'));
  const catalog = new SqliteCatalog(db);
  const embeddings = new SqliteEmbeddingStore(db);
  const registry = new SqliteModelRegistry(db);
  const spaces = await Promise.all(versions.map(async (version) => (await registry.get(version))!));
  const rand = seededRandom(15);
  const centres = Array.from({ length: 1000 }, () => Float32Array.from({ length: DIMS }, () => gaussian(rand)));
  const now = new Date().toISOString();
  for (let start = 0; start < N; start += 10_000) {
    const rows: { key: number; vector: Float32Array }[] = [];
    db.transaction(() => {
      for (let i = start; i < Math.min(N, start + 10_000); i++) {
        const id = `h${String(i).padStart(7, '0')}`;
        const { key } = catalog.upsertSync(
          { id, title: null, year: 1950 + (i % 70), releaseDate: null, genres: ['Drama'], singleGenre: 'Drama', split: 'train', imagePath: `images/${id}.jpg`, imageSha256: id.padEnd(64, '0'), pixelSha256: id.padEnd(64, '1'), width: 342, height: 513 },
          now,
        );
        const centre = centres[i % centres.length]!;
        const vector = Float32Array.from(centre, (c) => c + 0.5 * gaussian(rand));
        const norm = Math.hypot(...vector);
        rows.push({ key, vector: vector.map((x) => x / norm) });
      }
    })();
    for (const space of spaces) embeddings.putManySync(space, rows);
    if (start % 50_000 === 0) log(`posters ${start}/${N}`);
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

const fmt = (r: { latency: Summary; p999: number; over50: number; failures: number; skipped: number }) =>
  `${r.latency.reps} | ${r.latency.median.toFixed(1)} | **${r.latency.p99.toFixed(1)}** | ${r.p999.toFixed(0)} | ${r.latency.max.toFixed(0)} | ${r.over50} | ${r.failures} | ${r.skipped}`;

const machine = machineInfo();
const out: string[] = ['# /health during the heaviest work', ''];
out.push(
  `${machine.date}, ${machine.cpuModel} (${machine.cores} cores, ${machine.totalMemoryGiB.toFixed(0)} GiB), ${machine.os}, Node ${machine.node}, usearch ${machine.usearch}; ` +
    `\`nice node --import tsx bench/health-during-build.ts ${N}\`. Load average at the start: ${machine.loadAverageAtStart.toFixed(2)} ` +
    '(the 2 cores are shared with other work running at the same time: builds take longer than on an idle machine).',
  '',
  'GET /health is sent every 10 ms, each on time whatever the earlier ones are doing, so that a stalled event loop shows in every request it holds. Latencies in ms.',
  '',
);

// ---- An index rebuilt by a swap ------------------------------------------------------------------
const dataDir = join(DIR, 'data');
// The activation's answer comes when the swap is done (minutes): the connection must outlast it.
const env = { MARQUEE_DATA_DIR: dataDir, MARQUEE_CATALOG: '', MARQUEE_BASE_WEIGHTS: 'none', MARQUEE_ADMIN_TOKEN: TOKEN, MARQUEE_CONNECTION_TIMEOUT_MS: '3600000', LOG_LEVEL: 'info' };
/** The two versions: the one served, and the other (a second registration of the same network). */
async function versions(): Promise<[string, string]> {
  const db = openDb(join(dataDir, 'marquee.db'));
  const registry = new SqliteModelRegistry(db);
  const active = (await registry.active())!.version;
  const other = (db.prepare('SELECT version FROM model_versions WHERE version != ? ORDER BY created_at').pluck().all(active) as string[])[0]!;
  db.close();
  return [active, other];
}
// HEALTH_REUSE=1: the data dir of an earlier run (its catalog written, its first start done) is used as it is.
if (process.env.HEALTH_REUSE !== '1') {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const server = await startServer(ROOT, env);
  await server.stop();
  // A second version of the same network: activating it needs an index of its own.
  execFileSync(process.execPath, [join(ROOT, 'bin', 'marquee.js'), 'models', 'add', join(ROOT, 'models', 'default')], {
    env: { ...process.env, ...env, LOG_LEVEL: 'warn' },
    encoding: 'utf8',
  });
  const [active, other] = await versions();
  log(`versions ${active} (active) and ${other}; writing ${N} posters`);
  await writeCatalog(dataDir, [active, other]);
}
const [first, second] = await versions();

interface Swap {
  code: string;
  to: string;
  seconds: number;
  buildMs: number | null;
  idle: Awaited<ReturnType<ReturnType<typeof probeHealth>['stop']>>;
  during: Awaited<ReturnType<ReturnType<typeof probeHealth>['stop']>>;
}

async function swap(root: string, code: string, to: string, removeIndexOf: string | null): Promise<Swap> {
  if (removeIndexOf) for (const suffix of ['.usearch', '.usearch.json', '.rows', '.int8.usearch', '.int8.usearch.json', '.int8.rows']) rmSync(join(dataDir, 'indexes', `${removeIndexOf}${suffix}`), { force: true });
  log(`${code}: starting the server`);
  const server = await startServer(root, env, 7_200_000);
  log(`${code}: ready in ${server.readySeconds.toFixed(0)} s; /health alone for 15 s`);
  const idleProbe = probeHealth(server.url);
  await new Promise((resolve) => setTimeout(resolve, 15_000));
  const idle = await idleProbe.stop();
  log(`${code}: activating ${to}`);
  const probe = probeHealth(server.url);
  const started = nowMs();
  const activated = await admin(server, 'POST', `/admin/models/${to}/activate`);
  const seconds = (nowMs() - started) / 1000;
  const during = await probe.stop();
  if (activated.status !== 200) throw new Error(`activation: ${activated.status} ${JSON.stringify(activated.body)}\n${server.logs().slice(-3000)}`);
  const built = server
    .logs()
    .split('\n')
    .filter((line) => line.includes('"vector index ready"'))
    .map((line) => JSON.parse(line) as { version: string; ms: number; rebuilt: boolean })
    .find((line) => line.version === to && line.rebuilt);
  await server.stop();
  log(`${code}: swap took ${seconds.toFixed(0)} s; /health p99 ${during.latency.p99.toFixed(1)} ms, max ${during.latency.max.toFixed(0)} ms`);
  return { code, to, seconds, buildMs: built?.ms ?? null, idle, during };
}

const swaps: Swap[] = [];
// This code: its first start builds the first version's index (before serving); the swap builds the other's.
swaps.push(await swap(ROOT, 'this code (build on a worker thread)', second, null));
// The code before: back to the first version, its index removed so that the swap builds it.
if (BEFORE_ROOT) swaps.push(await swap(BEFORE_ROOT, 'the code before (build on the event loop)', first, first));

out.push(`## An index of ${N.toLocaleString('en-US')} posters rebuilt by a swap`, '');
out.push(
  `Two versions of the shipped default model (512-d, ${N.toLocaleString('en-US')} posters embedded under each, the server's default f32 graph); the server serves one, and \`POST /admin/models/{version}/activate\` swaps to the other, whose index is missing, so the swap builds it. Target: /health p99 ≤ 50 ms during the swap.`,
  '',
);
out.push('| code | phase | requests | p50 | p99 | p99.9 | max | over 50 ms | failed | ticks skipped (100 in flight) |');
out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const s of swaps) {
  out.push(`| ${s.code} | alone, before the swap | ${fmt(s.idle)} |`);
  out.push(`| ${s.code} | during the swap (${s.seconds.toFixed(0)} s${s.buildMs === null ? '' : `; its index build ${(s.buildMs / 1000).toFixed(0)} s`}) | ${fmt(s.during)} |`);
}
out.push('');
rmSync(DIR, { recursive: true, force: true });

// ---- A first retrain creates the Python environment ------------------------------------------------
if (process.env.BENCH_SKIP_PYTHON !== '1') {
  const venv = join(mkdtempSync(join(tmpdir(), 'marquee-venv-')), 'venv');
  const rows = sharedRows().filter((r) => r.split !== 'test').slice(0, 100);
  const server = await startServer(ROOT, { MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_WEIGHTS: 'none', MARQUEE_ADMIN_TOKEN: TOKEN, MARQUEE_PYTHON: '', MARQUEE_VENV: venv }, 1_800_000);
  const job = await admin(server, 'POST', '/admin/retrain', { epochs: 1 });
  if (job.status !== 202) throw new Error(`retrain: ${job.status} ${JSON.stringify(job.body)}`);
  const probe = probeHealth(server.url);
  let inStep = false;
  let stepStarted = 0;
  let stepSeconds = 0;
  const seen: string[] = [];
  for (;;) {
    const { body } = await admin(server, 'GET', `/admin/jobs/${job.body.id}`);
    const progress = body.progress ?? {};
    const inEnvironment = progress.stage === 'python environment' && body.state === 'preparing';
    if (inEnvironment && !inStep) {
      inStep = true;
      stepStarted = nowMs();
    }
    if (inEnvironment) {
      const line = `${progress.step}${progress.total ? ` ${progress.done}/${progress.total}` : ''}`;
      if (seen.at(-1) !== line) seen.push(line);
    }
    if ((inStep && !inEnvironment) || ['succeeded', 'failed', 'cancelled', 'rejected'].includes(body.state)) {
      stepSeconds = (nowMs() - stepStarted) / 1000;
      log(`job ${body.state}: ${progress.stage ?? ''} ${body.error ?? ''}`);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const during = await probe.stop();
  await admin(server, 'DELETE', `/admin/jobs/${job.body.id}`);
  await server.stop();
  rmSync(venv, { recursive: true, force: true });
  out.push('## A first retrain creates the Python environment', '');
  out.push(
    `A server with \`MARQUEE_VENV\` at an empty directory and a catalog of ${rows.length} posters gets \`POST /admin/retrain\`; the job renders its inputs, then creates the environment (\`scripts/python-env.sh\`: a venv and the ${'pinned'} lock, about 5 GB, from this machine's wheel cache) as a step of its \`preparing\` state, and is cancelled once it moves on. /health is probed from the request on.`,
    '',
    `The environment step took ${stepSeconds.toFixed(0)} s; the job reported, in turn: ${seen.length > 12 ? [...seen.slice(0, 6), '…', ...seen.slice(-4)].join('; ') : seen.join('; ')}.`,
    '',
    '| phase | requests | p50 | p99 | p99.9 | max | over 50 ms | failed | ticks skipped (100 in flight) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| the job, from its start through the environment step | ${fmt(during)} |`,
    '',
  );
}
console.log(out.join('\n'));
