import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { ROOT } from './support/paths.js';
import { freePortRun } from './support/ports.js';
import { upload } from './support/server.js';

/**
 * The local cluster of scripts/cluster.sh (a PostgreSQL primary and synchronous standby, three
 * servers, HAProxy in front of both) under load, through its failures (issue 17, step 8): a server
 * killed and restarted, then the primary killed and the standby promoted by hand. No acknowledged
 * write is lost, and every server searches every one of them afterwards.
 */
const TOKEN = 'cluster-token';
const rows = subsetRows({ train: 40, val: 5, test: 5 });
const taken = new Set(rows.map((r) => r.id));
const newcomers = sharedRows().filter((r) => r.split === 'test' && !taken.has(r.id)).slice(0, 400);

/** The balancer, three servers, PostgreSQL's proxy, primary and standby: seven ports from one base. */
const CLUSTER_PORTS = 7;

describe('a cluster of three servers behind HAProxy, on a primary and a synchronous standby', () => {
  let env: NodeJS.ProcessEnv;
  let lb: string;
  let serverUrl: (n: number) => string;
  /** A server's log so far (the cluster's directory goes when it stops). */
  let serverLog: (n: number) => string;
  const cluster = (...args: string[]) => {
    const run = spawnSync('bash', [join(ROOT, 'scripts', 'cluster.sh'), ...args], { env, encoding: 'utf8', timeout: 600_000 });
    assert.equal(run.status, 0, `cluster.sh ${args.join(' ')}: ${run.stderr}${run.stdout}`);
    return run.stdout;
  };

  before(async () => {
    const base = await freePortRun(CLUSTER_PORTS);
    env = {
      ...process.env,
      MARQUEE_CLUSTER_DIR: join(mkdtempSync(join(tmpdir(), 'marquee-cluster-')), 'cluster'),
      MARQUEE_CLUSTER_PORT: String(base),
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_ADMIN_TOKEN: TOKEN,
      MARQUEE_PRECISION: 'fp32',
      MARQUEE_THREADS: '1',
    };
    lb = `http://127.0.0.1:${base}`;
    serverUrl = (n) => `http://127.0.0.1:${base + n}`;
    serverLog = (n) => readFileSync(join(env!.MARQUEE_CLUSTER_DIR!, `server${n}.log`), 'utf8');
    cluster('start');
  });
  after(() => {
    if (env) spawnSync('bash', [join(ROOT, 'scripts', 'cluster.sh'), 'stop'], { env, stdio: 'ignore' });
  });

  it('keeps answering through a server killed under load and the primary lost, and loses no acknowledged write', async (t) => {
    /** Posters whose add was acknowledged (201), with the change each answered. */
    const acknowledged: { id: string; change: bigint }[] = [];
    const failures: Record<string, { reads: number; writes: number }> = {};
    let reads = 0;
    let phase = 'steady';
    const fail = (kind: 'reads' | 'writes') => ((failures[phase] ??= { reads: 0, writes: 0 })[kind] += 1);
    let running = true;
    const reader = async () => {
      for (let i = 0; running; i++) {
        const id = rows[i % rows.length]!.id;
        const response = await fetch(`${lb}/posters/${id}/similar?k=5`).catch(() => null);
        if (response?.status === 200) reads += 1;
        else fail('reads');
        await response?.arrayBuffer();
      }
    };
    let next = 0;
    const writer = async () => {
      while (running && next < newcomers.length) {
        const poster = newcomers[next++]!;
        const form = new FormData();
        form.append('id', poster.id);
        form.append('genres', poster.genres);
        form.append('image', new Blob([new Uint8Array(readFileSync(posterPath(poster.id)))], { type: 'image/jpeg' }), 'poster.jpg');
        const response = await fetch(`${lb}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } }).catch(() => null);
        if (response?.status === 201) acknowledged.push({ id: poster.id, change: BigInt(response.headers.get('marquee-change')!) });
        else fail('writes');
        await response?.arrayBuffer();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const load = Promise.all([reader(), reader(), writer()]);

    await sleep(2000);
    phase = 'server 2 killed';
    cluster('kill-server', '2');
    await sleep(3000);
    phase = 'server 2 restarting';
    cluster('start-server', '2');
    await sleep(1000);
    phase = 'primary killed';
    const writesBefore = acknowledged.length;
    cluster('kill-primary');
    await sleep(1500);
    phase = 'standby promoted';
    const promoted = performance.now();
    cluster('promote');
    while (acknowledged.length === writesBefore && performance.now() - promoted < 30_000) await sleep(20);
    const resumed = performance.now() - promoted;
    await sleep(2000);
    running = false;
    await load;

    t.diagnostic(`reads answered ${reads}; writes acknowledged ${acknowledged.length}; failures by phase ${JSON.stringify(failures)}; writes resumed ${resumed.toFixed(0)} ms after the promotion`);
    assert.ok(acknowledged.length > writesBefore, 'writes resume once the standby is promoted');
    for (const quiet of ['steady', 'server 2 killed', 'server 2 restarting']) assert.equal(failures[quiet]?.reads ?? 0, 0, `no read fails while ${quiet}`);
    assert.equal(failures['server 2 killed']?.writes ?? 0, 0, 'no write fails while a server dies');

    // No acknowledged write is lost: each is in the catalog, and each server searches it.
    const last = acknowledged.reduce((max, a) => (a.change > max ? a.change : max), 0n).toString();
    for (const { id } of acknowledged) assert.equal((await fetch(`${lb}/posters/${id}`)).status, 200, `acknowledged poster ${id}`);
    for (const n of [1, 2, 3]) {
      for (const { id } of acknowledged.slice(-5)) {
        const found = await upload(`${serverUrl(n)}/posters/similar?k=1`, readFileSync(posterPath(id)), { headers: { 'marquee-min-change': last } }).catch(
          (error: Error) => assert.fail(`server ${n}: ${error.message} (${String(error.cause)}); the end of its log:\n${serverLog(n).slice(-4000)}`),
        );
        assert.equal(found.status, 200, JSON.stringify(found.body));
        assert.equal((found.body as { results: { id: string }[] }).results[0]!.id, id, `server ${n} searches ${id}`);
      }
    }
    assert.match(cluster('status'), /standby: pg_ctl: server is running/);
  });
});
