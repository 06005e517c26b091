import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import usearch from 'usearch';
import { seededRandom } from '../../src/figures/random.js';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './catalog.js';
import { testModelDir } from './model.js';
import { adminRequest, startServer, upload, type RunningServer } from './server.js';


/**
 * The crash harness: starts the real server, drives it into a stage (first start: import, embedding,
 * index build; a retrain: each of its states; a swap), kills it with SIGKILL at a random moment in
 * that stage, restarts it on the same data dir and checks that it came back whole.
 */

/**
 * In the order of a run's kills. 'index build' is last: its catalog (3,000 posters, large enough that
 * building the index takes a few hundred ms) makes its first start while the kills before it go on.
 */
export const STAGES = [
  'import',
  'embedding',
  'retrain: preparing',
  'retrain: training',
  'retrain: evaluating',
  'retrain: indexing',
  'retrain: swapping',
  'swap',
  'adds and deletes',
  'index build',
] as const;
export type Stage = (typeof STAGES)[number];

export interface Kill {
  n: number;
  target: Stage;
  /** Where the server's log says it was when killed. */
  landed: string;
  delayMs: number;
  /** How long bringing the server into its stage took, and checking it after its restart. */
  enterMs: number;
  restartMs: number;
  checkMs: number;
  problems: string[];
}

const TOKEN = 'crash-token';
const admin = (url: string, method: string, path: string, body?: unknown) => adminRequest(url, TOKEN, method, path, body);
const FINAL = ['succeeded', 'failed', 'cancelled', 'rejected'];

/** Log markers, and the stage that each begins. */
const MARKS: [RegExp, string][] = [
  [/Server listening/, 'import'],
  [/"msg":"catalog imported"/, 'base model'],
  [/"msg":"embedding the catalog"/, 'embedding'],
  [/"msg":"building the vector index"/, 'index build'],
  [/"msg":"vector index ready"/, 'loading'],
  [/"msg":"ready"/, 'serving'],
  [/"state":"\w+","msg":"retrain job"/, 'job'],
  [/"url":"\/admin\/models\/[^"]+\/activate"[^\n]*"msg":"incoming request"/, 'swap'],
  [/"msg":"model activated"/, 'activated'],
  [/"method":"(POST|DELETE)","url":"\/admin\/posters[^"]*"[^\n]*"msg":"incoming request"/, 'adds and deletes'],
];

/**
 * Where a server was when killed, from its log: the last stage begun, inside a retrain or a swap
 * named after it (a retrain's "evaluating" embeds the catalog too, but is not a first start's embedding).
 */
export function landing(logs: string): string {
  const marks = MARKS.flatMap(([pattern, name]) => [...logs.matchAll(new RegExp(pattern.source, 'g'))].map((m) => ({ at: m.index!, name, text: m[0] })));
  marks.sort((x, y) => x.at - y.at);
  let stage = 'spawn';
  let within: string | null = null;
  for (const mark of marks) {
    if (mark.name === 'job') {
      const state = /"state":"(\w+)"/.exec(mark.text)![1]!;
      within = FINAL.includes(state) ? null : `retrain: ${state}`;
      if (!within) stage = 'serving';
    } else if (mark.name === 'swap') {
      within = 'swap';
    } else if (mark.name === 'activated' && within === 'swap') {
      within = null;
      stage = 'after the swap';
    } else if (mark.name !== 'activated') {
      stage = mark.name;
    }
  }
  return within ?? stage;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function waitForLog(server: RunningServer, pattern: RegExp, from: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pattern.test(server.logs().slice(from))) {
        done();
        resolve();
      } else if (server.child.exitCode !== null) {
        done();
        reject(new Error(`server exited waiting for ${pattern}:\n${server.logs().slice(-2000)}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${pattern} in ${timeoutMs} ms:\n${server.logs().slice(-2000)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      server.child.stdout!.off('data', check);
    };
    server.child.stdout!.on('data', check);
    check();
  });
}


/** What the kill must not undo: answers the server gave before it. */
export interface Acknowledged {
  jobs: string[];
  activated: string | null;
  /** Posters whose add (201) or delete (204) through the API was answered. */
  added?: string[];
  deleted?: string[];
}

/** Training processes still running for this data dir (their manifest lies under it). */
function trainingProcesses(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('training') && cmdline.includes(dataDir)) pids.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

function leftoverFiles(dataDir: string, registered: Set<string>, serverPid: number): string[] {
  const problems: string[] = [];
  if (existsSync(join(dataDir, 'jobs'))) problems.push('jobs/ remains');
  const walk = (dir: string, rel: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(join(dir, entry.name), name);
      else if (/\.tmp-\d+|\.download-\d+|\.\d+\.tmp$/.test(entry.name)) problems.push(`temporary file ${name}`);
    }
  };
  walk(dataDir, '');
  const models = join(dataDir, 'models');
  if (existsSync(models)) {
    for (const name of readdirSync(models)) if (!registered.has(`models/${name}`)) problems.push(`unregistered model file models/${name}`);
  }
  const run = join(dataDir, 'run');
  if (existsSync(run)) {
    for (const name of readdirSync(run)) if (name !== `${serverPid}.json`) problems.push(`stale claim run/${name}`);
  }
  return problems;
}

/** Everything a restarted server must satisfy; returns what it does not. */
export async function checkRestart(server: RunningServer, acknowledged: Acknowledged): Promise<string[]> {
  const problems: string[] = [];
  const { dataDir, url } = server;
  const db = new Database(join(dataDir, 'marquee.db'), { readonly: true, fileMustExist: true });
  try {
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') problems.push(`integrity_check: ${String(integrity)}`);
    const foreign = db.pragma('foreign_key_check') as unknown[];
    if (foreign.length > 0) problems.push(`foreign_key_check: ${foreign.length} rows`);
    const unfinished = db.prepare(`SELECT id, state FROM jobs WHERE state NOT IN ('succeeded','failed','cancelled','rejected')`).all();
    if (unfinished.length > 0) problems.push(`unfinished jobs after restart: ${JSON.stringify(unfinished)}`);
    for (const id of acknowledged.added ?? []) {
      if (!db.prepare('SELECT 1 FROM posters WHERE id = ?').get(id)) problems.push(`acknowledged add of ${id} is gone`);
    }
    for (const id of acknowledged.deleted ?? []) {
      if (db.prepare('SELECT 1 FROM posters WHERE id = ?').get(id)) problems.push(`acknowledged delete of ${id} is undone`);
    }
    for (const id of acknowledged.jobs) {
      const job = db.prepare('SELECT state FROM jobs WHERE id = ?').get(id) as { state: string } | undefined;
      if (!job) problems.push(`acknowledged job ${id} is gone`);
    }
    const active = db.prepare('SELECT m.* FROM active_model a JOIN model_versions m ON m.version = a.version').get() as
      | { version: string; file_path: string; file_sha256: string; dims: number }
      | undefined;
    if (!active) return [...problems, 'no active model'];
    if (acknowledged.activated && active.version !== acknowledged.activated) {
      problems.push(`activation of ${acknowledged.activated} was acknowledged, ${active.version} is active`);
    }
    const file = join(dataDir, active.file_path);
    if (!existsSync(file)) problems.push(`active model file ${active.file_path} missing`);
    else if (createHash('sha256').update(readFileSync(file)).digest('hex') !== active.file_sha256) problems.push('active model file does not match its sha256');

    const ready = (await fetch(`${url}/ready`).then((r) => r.json())) as { model_version: string; posters: number };
    if (ready.model_version !== active.version) problems.push(`/ready serves ${ready.model_version}, SQLite says ${active.version}`);
    const keys = (db.prepare('SELECT key FROM posters ORDER BY key').all() as { key: number }[]).map((r) => r.key);
    const embedded = (db.prepare('SELECT count(*) AS n FROM embeddings WHERE model_version = ?').get(active.version) as { n: number }).n;
    if (ready.posters !== keys.length) problems.push(`/ready has ${ready.posters} posters, SQLite ${keys.length}`);
    if (embedded !== keys.length) problems.push(`${embedded} embeddings of ${keys.length} posters`);
    // The index file the server mapped, read by usearch itself, with the changes logged after the
    // checkpoint it holds (which the server replays beside it): exactly SQLite's keys.
    const indexFile = join(dataDir, 'indexes', `${active.version}.usearch`);
    const index = new usearch.Index({ dimensions: active.dims, metric: usearch.MetricKind.L2sq, quantization: usearch.ScalarKind.F32, connectivity: 16, expansion_add: 128, expansion_search: 64, multi: false });
    index.view(indexFile);
    const { seq } = JSON.parse(readFileSync(`${indexFile}.json`, 'utf8')) as { seq: number };
    const held = new Set(keys.filter((key) => index.contains(BigInt(key))));
    const changed = db.prepare('SELECT DISTINCT poster_key FROM embedding_changes WHERE model_version = ? AND seq > ?').pluck().all(active.version, seq) as number[];
    const hasEmbedding = db.prepare('SELECT 1 FROM embeddings WHERE model_version = ? AND poster_key = ?');
    let removals = 0;
    for (const key of changed) {
      if (hasEmbedding.get(active.version, key)) held.add(key);
      else (held.delete(key), removals++);
    }
    const fileOnly = Number(index.size()) - keys.filter((key) => index.contains(BigInt(key))).length;
    if (fileOnly > removals) problems.push(`the index file holds ${fileOnly} posters SQLite has not, ${removals} removals logged`);
    if (held.size !== keys.length) problems.push(`index and its log hold ${held.size} posters, SQLite ${keys.length}`);
    const absent = keys.filter((key) => !held.has(key));
    if (absent.length > 0) problems.push(`${absent.length} posters missing from the index and its log (first ${absent[0]})`);

    // Through the API: a poster's own image names it as catalog_match. Its place among the nearest is not
    // asked: that is HNSW's recall, not consistency, and on the random-init test model's near-identical
    // embeddings a poster's own vector is sometimes not among its 10 approximate nearest (up to 9 of 3,000).
    const probe = db.prepare('SELECT id, image_path FROM posters ORDER BY random() LIMIT 1').get() as { id: string; image_path: string } | undefined;
    if (probe) {
      const answer = await upload(`${url}/posters/similar?k=10`, readFileSync(join(dataDir, probe.image_path)));
      if (answer.status !== 200) problems.push(`similar answered ${answer.status}`);
      else if (answer.body.catalog_match?.id !== probe.id) problems.push(`poster ${probe.id} is not the catalog_match of its own image`);
    }
    const registered = new Set(
      (db.prepare('SELECT file_path, checkpoint_path FROM model_versions').all() as { file_path: string; checkpoint_path: string | null }[]).flatMap(
        (m) => [m.file_path, m.checkpoint_path ?? ''],
      ),
    );
    problems.push(...leftoverFiles(dataDir, registered, server.child.pid!));
  } finally {
    db.close();
  }
  const orphans = trainingProcesses(dataDir);
  if (orphans.length > 0) problems.push(`training processes outlived the server: ${orphans.join(', ')}`);
  return problems;
}

export interface CrashRunOptions {
  kills: number;
  seed: number;
  /** The catalog of first starts, retrains and swaps. */
  posters?: { train: number; val: number; test: number };
  /** The catalog of index-build kills: large enough that building its index takes a few hundred ms. */
  indexPosters?: { train: number; val: number; test: number };
  /** The stages to kill in, in rotation (default: all). */
  stages?: readonly Stage[];
  onKill?: (kill: Kill) => void;
}

/** How long after its stage begins a kill may land (about the stage's length here on the test model). */
const WINDOW_MS: Record<Stage, number> = {
  import: 1200,
  embedding: 1500,
  'index build': 350,
  'retrain: preparing': 800,
  'retrain: training': 12_000,
  'retrain: evaluating': 2000,
  'retrain: indexing': 20,
  'retrain: swapping': 5,
  swap: 400,
  'adds and deletes': 2000,
};

const FIRST_START: Partial<Record<Stage, RegExp>> = { import: /Server listening/, embedding: /"msg":"embedding the catalog"/ };

/** A data dir that servers are started on, killed and restarted. */
class Subject {
  server: RunningServer | null = null;
  dataDir: string | null = null;
  /** A start made in the background (startAhead), for ready() to wait on. */
  private ahead: Promise<RunningServer> | null = null;

  constructor(private readonly env: Record<string, string>) {}

  async start(options: { fresh?: boolean; waitReady?: boolean; readyTimeoutMs?: number } = {}): Promise<RunningServer> {
    await this.server?.stop();
    if (options.fresh) this.discard();
    this.server = await startServer({ ...this.env, ...(this.dataDir ? { MARQUEE_DATA_DIR: this.dataDir } : {}) }, {
      waitReady: options.waitReady ?? true,
      readyTimeoutMs: options.readyTimeoutMs ?? 180_000,
    });
    this.dataDir = this.server.dataDir;
    return this.server;
  }

  /** Starts the server now without waiting for it: a first start that shares the machine with other kills, so given long. */
  startAhead(): void {
    this.ahead = this.start({ readyTimeoutMs: 600_000 });
    this.ahead.catch(() => undefined); // ready() or close() awaits it, and a failure surfaces there
  }

  async ready(): Promise<RunningServer> {
    if (this.ahead) {
      const ahead = this.ahead;
      this.ahead = null;
      return ahead;
    }
    return this.server && this.server.child.exitCode === null ? this.server : this.start();
  }

  discard(): void {
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
    this.dataDir = null;
  }

  async close(): Promise<void> {
    await this.ahead?.catch(() => undefined);
    await this.server?.stop();
    this.discard();
  }
}

/**
 * How long a retrain may take to reach a stage: a wait, not a timing. On a CPU with AVX-512 a
 * one-epoch head retrain trains in well under a minute; on an AVX2-only one, beside the Python
 * tests, its training took longer than the three minutes this once was.
 */
const RETRAIN_STAGE_WAIT_MS = 600_000;

/** Brings a server into the stage; resolves when it has begun. Returns the log offset where it began. */
async function enter(target: Stage, small: Subject, large: Subject, acknowledged: Acknowledged): Promise<{ server: RunningServer; from: number }> {
  const marker = FIRST_START[target];
  if (marker) {
    const server = await small.start({ fresh: true, waitReady: false });
    await waitForLog(server, marker, 0, 60_000);
    return { server, from: 0 };
  }
  if (target === 'index build') {
    // Embeddings stored, the index file gone: the start rebuilds it from SQLite.
    await large.ready();
    await large.server!.stop();
    rmSync(join(large.dataDir!, 'indexes'), { recursive: true, force: true });
    const server = await large.start({ waitReady: false });
    await waitForLog(server, /"msg":"building the vector index"/, 0, 60_000);
    return { server, from: 0 };
  }
  const server = await small.ready();
  if (target === 'adds and deletes') {
    void liveWrites(server, acknowledged);
    return { server, from: server.logs().length };
  }
  if (target === 'swap') {
    let models = (await admin(server.url, 'GET', '/admin/models')).body;
    if (models.models.length < 2) {
      // Nothing to swap to yet: a forced retrain makes the second version first.
      const from = server.logs().length;
      const job = await admin(server.url, 'POST', '/admin/retrain', { mode: 'head', epochs: 1, force: true });
      acknowledged.jobs.push(job.body.id);
      await waitForLog(server, /"state":"(succeeded|failed|rejected)","msg":"retrain job"/, from, RETRAIN_STAGE_WAIT_MS);
      models = (await admin(server.url, 'GET', '/admin/models')).body;
    }
    const other = models.models.find((m: { version: string }) => m.version !== models.active);
    if (!other) throw new Error(`no second model version to swap to: ${JSON.stringify(models)}`);
    const from = server.logs().length;
    void admin(server.url, 'POST', `/admin/models/${other.version}/activate`).then(
      (answer) => {
        if (answer.status === 200) acknowledged.activated = other.version;
      },
      () => undefined,
    );
    await waitForLog(server, /"url":"\/admin\/models\/[^"]+\/activate"/, from, 10_000);
    return { server, from };
  }
  const from = server.logs().length;
  const job = await admin(server.url, 'POST', '/admin/retrain', { mode: 'head', epochs: 1, force: true });
  if (job.status !== 202) throw new Error(`retrain answered ${job.status}: ${JSON.stringify(job.body)}`);
  acknowledged.jobs.push(job.body.id);
  await waitForLog(server, new RegExp(`"state":"${target.slice('retrain: '.length)}","msg":"retrain job"`), from, RETRAIN_STAGE_WAIT_MS);
  return { server, from };
}

let written = 0;

/**
 * Four clients adding posters through the API and deleting every other one, until the server
 * dies; what it acknowledged is recorded. Each add has an id of its own, so none is ever reused.
 */
async function liveWrites(server: RunningServer, acknowledged: Acknowledged): Promise<void> {
  acknowledged.added = [];
  acknowledged.deleted = [];
  // Pictures of their own (the end of the shared catalog, far from the harness's catalog), so each poster is its own first hit.
  const catalog = new Set(subsetRows({ train: 2400, val: 400, test: 200 }).map((r) => r.id));
  const pool = sharedRows().filter((r) => !catalog.has(r.id));
  const client = async () => {
    for (let i = 0; ; i++) {
      const id = `live-${process.pid}-${++written}`;
      const form = new FormData();
      form.append('id', id);
      form.append('genres', 'Drama');
      form.append('image', new Blob([new Uint8Array(readFileSync(posterPath(pool[written % pool.length]!.id)))], { type: 'image/jpeg' }), 'p.jpg');
      const added = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
      if (added.status !== 201) return;
      acknowledged.added!.push(id);
      if (i % 2 === 1) {
        // Once the delete is sent, either outcome is right until it is answered.
        acknowledged.added!.splice(acknowledged.added!.indexOf(id), 1);
        const deleted = await fetch(`${server.url}/admin/posters/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
        if (deleted.status !== 204) return;
        acknowledged.deleted!.push(id);
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, () => client().catch(() => undefined)));
}

export async function runCrashes(options: CrashRunOptions): Promise<Kill[]> {
  const rand = seededRandom(options.seed);
  const common = { MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
  const small = new Subject({ ...common, MARQUEE_CATALOG: makeCatalogDir(subsetRows(options.posters ?? { train: 240, val: 40, test: 20 })) });
  const large = new Subject({ ...common, MARQUEE_CATALOG: makeCatalogDir(subsetRows(options.indexPosters ?? { train: 2400, val: 400, test: 200 })) });
  const stages = options.stages ?? STAGES;
  const kills: Kill[] = [];
  if (stages.slice(0, options.kills).includes('index build')) large.startAhead();
  try {
    for (let n = 1; n <= options.kills; n++) {
      const target = stages[(n - 1) % stages.length]!;
      const delayMs = Math.round(rand() * WINDOW_MS[target]);
      const acknowledged: Acknowledged = { jobs: [], activated: null };
      const subject = target === 'index build' ? large : small;
      const entering = Date.now();
      const { server, from } = await enter(target, small, large, acknowledged);
      const enterMs = Date.now() - entering;
      if (delayMs > 0) await sleep(delayMs);
      server.child.kill('SIGKILL');
      await server.stop();
      const landed = landing(server.logs().slice(from));
      const restarted = Date.now();
      const again = await subject.start();
      const restartMs = Date.now() - restarted;
      const checking = Date.now();
      const problems = await checkRestart(again, acknowledged);
      const kill: Kill = { n, target, landed, delayMs, enterMs, restartMs, checkMs: Date.now() - checking, problems };
      kills.push(kill);
      options.onKill?.(kill);
    }
  } finally {
    await small.close();
    await large.close();
  }
  return kills;
}
