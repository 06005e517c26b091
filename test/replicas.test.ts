import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { testModelDir } from './support/model.js';
import { ROOT } from './support/paths.js';
import { startCluster, type TestCluster } from './support/postgres.js';
import { adminRequest, startServer, upload, type RunningServer } from './support/server.js';

/**
 * Several servers on one PostgreSQL database and one shared directory (issue 17), each with a data
 * dir of its own: what one server writes, every other answers from, within a bound, without a restart.
 */
const TOKEN = 'replica-token';
const rows = subsetRows({ train: 40, val: 5, test: 5 });
const taken = new Set(rows.map((r) => r.id));
const outsider = sharedRows().find((r) => r.split === 'test' && !taken.has(r.id))!;
const image = (id: string) => readFileSync(posterPath(id));
/** How long a write committed on one server may take to reach another's answers. */
const BOUND_MS = 5_000;

async function addPoster(server: RunningServer, bytes: Buffer, fields: Record<string, string>) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append('image', new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), 'poster.jpg');
  const response = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, body: (await response.json()) as any, change: response.headers.get('marquee-change') };
}

async function similarIds(server: RunningServer, bytes: Buffer, query = 'k=5', headers: Record<string, string> = {}): Promise<string[]> {
  const answer = await upload(`${server.url}/posters/similar?${query}`, bytes, { headers });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return (answer.body as { results: { id: string }[] }).results.map((r) => r.id);
}

/** Polls until `check` holds, up to the bound; the time it took. */
async function within(what: string, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now() - started;
    if (performance.now() - started > BOUND_MS) assert.fail(`${what}: not within ${BOUND_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('several servers on one PostgreSQL', () => {
  let cluster: TestCluster;
  let env: Record<string, string>;
  let a: RunningServer;
  let b: RunningServer;
  before(async () => {
    cluster = await startCluster();
    env = {
      MARQUEE_DATABASE_URL: await cluster.database(),
      MARQUEE_SHARED_DIR: mkdtempSync(join(tmpdir(), 'marquee-shared-')),
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_ADMIN_TOKEN: TOKEN,
      MARQUEE_MIN_CHANGE_WAIT_MS: '1000',
      MARQUEE_JOB_LEASE_MS: '3000',
    };
    a = await startServer(env);
    b = await startServer(env);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await cluster?.stop();
  });

  it('start from the one truth: the same model, catalog, index and answers, the files shared, the rest each its own', async () => {
    const ready = await Promise.all([a, b].map(async (s) => (await (await fetch(`${s.url}/ready`)).json()) as any));
    assert.equal(ready[0].model_version, ready[1].model_version);
    assert.notEqual(a.dataDir, b.dataDir);
    for (const s of [a, b]) for (const name of ['images', 'models']) assert.ok(lstatSync(join(s.dataDir, name)).isSymbolicLink(), `${name} of ${s.dataDir}`);
    assert.match(b.logs(), new RegExp(`"added":0,"updated":0,"unchanged":${rows.length}`), 'the second server finds the catalog imported');
    assert.match(a.logs(), /"rebuilt":true/, 'the first server builds the index');
    assert.match(b.logs(), /index checkpoint taken from the shared directory/, 'the second starts from the index the first published');
    assert.match(b.logs(), /"rebuilt":false/);
    const probe = rows.find((r) => r.split === 'test')!;
    assert.deepEqual(await similarIds(b, image(probe.id)), await similarIds(a, image(probe.id)));
    const counts = await Promise.all([a, b].map(async (s) => ((await (await fetch(`${s.url}/posters?limit=100`)).json()) as any).posters.length));
    assert.deepEqual(counts, [rows.length, rows.length]);
  });

  it("a poster added, changed and removed on one server is in, changed in and gone from the other's answers within the bound", async (t) => {
    const bytes = image(outsider.id);
    assert.ok(!(await similarIds(b, bytes)).includes(outsider.id));
    const added = await addPoster(a, bytes, { id: outsider.id, title: 'Replicated', genres: 'Horror' });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const seen = await within('the add on A searched on B', async () => (await similarIds(b, bytes))[0] === outsider.id);
    assert.equal((await fetch(`${b.url}/posters/${outsider.id}/image`)).status, 200, 'its picture is in the shared directory');
    const copies = async () => ((await upload(`${b.url}/posters/near-duplicates`, bytes)).body as { near_duplicates: { id: string }[] }).near_duplicates.map((d) => d.id);
    await within("the add on A among B's near-duplicates", async () => (await copies()).includes(outsider.id));

    const patched = await adminRequest(a.url, TOKEN, 'PATCH', `/admin/posters/${outsider.id}`, { genres: ['Western'] });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const filtered = await within('the new genre a filter on B', async () => (await similarIds(b, bytes, 'k=1&genre=Western'))[0] === outsider.id);

    const removed = await adminRequest(b.url, TOKEN, 'DELETE', `/admin/posters/${outsider.id}`);
    assert.equal(removed.status, 204, JSON.stringify(removed.body));
    const gone = await within('the delete on B gone from A', async () => !(await similarIds(a, bytes)).includes(outsider.id));
    const copiesOnA = async () => ((await upload(`${a.url}/posters/near-duplicates`, bytes)).body as { near_duplicates: { id: string }[] }).near_duplicates.map((d) => d.id);
    await within("the delete on B gone from A's near-duplicates", async () => !(await copiesOnA()).includes(outsider.id));
    t.diagnostic(`add on A → searched on B ${seen.toFixed(0)} ms; genre changed on A → filter on B ${filtered.toFixed(0)} ms; delete on B → gone on A ${gone.toFixed(0)} ms (polled every 20 ms)`);
  });

  it('reads its own writes on any server: a write answers its change, a read that names it waits for it, or 503 for a load balancer to retry', async () => {
    const other = sharedRows().find((r) => r.split === 'test' && !taken.has(r.id) && r.id !== outsider.id)!;
    const bytes = image(other.id);
    for (let round = 0; round < 5; round++) {
      const added = await addPoster(a, bytes, { id: other.id, title: `Round ${round}`, genres: 'Comedy', upsert: 'true' });
      assert.ok([200, 201].includes(added.status), JSON.stringify(added.body));
      assert.match(added.change ?? '', /^\d+$/, 'a write on PostgreSQL answers its change id');
      // At once, no polling: B waits until it has applied the write.
      assert.equal((await similarIds(b, bytes, 'k=1', { 'marquee-min-change': added.change! }))[0], other.id);
      const removed = await adminRequest(a.url, TOKEN, 'DELETE', `/admin/posters/${other.id}`);
      assert.equal(removed.status, 204);
      const change = removed.headers.get('marquee-change')!;
      assert.ok(BigInt(change) > BigInt(added.change!));
      assert.ok(!(await similarIds(b, bytes, 'k=5', { 'marquee-min-change': change })).includes(other.id));
    }
    const ahead = await upload(`${b.url}/posters/similar?k=1`, bytes, { headers: { 'marquee-min-change': '999999999' } });
    assert.equal(ahead.status, 503);
    assert.equal((ahead.body as any).error.code, 'not_caught_up');
    assert.equal(ahead.headers.get('retry-after'), '1');
    const bad = await upload(`${b.url}/posters/similar?k=1`, bytes, { headers: { 'marquee-min-change': 'soon' } });
    assert.equal(bad.status, 400);
    assert.equal((bad.body as any).error.code, 'invalid_request');
  });

  it('a server restarted catches up from its checkpoint and the log: what was written while it was down is in its answers', async () => {
    await b.stop();
    const bytes = image(outsider.id);
    const added = await addPoster(a, bytes, { id: outsider.id, title: 'While B was down', genres: 'Drama' });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    b = await startServer({ ...env, MARQUEE_DATA_DIR: b.dataDir });
    assert.match(b.logs(), /"rebuilt":false/, 'the checkpoint was used, not rebuilt');
    assert.equal((await similarIds(b, bytes))[0], outsider.id);
  });

  it('a server started while the database cannot be reached waits for it, and comes up once it can be', async () => {
    // The database behind a gate that refuses connections (nothing listens on its port) for the first seconds.
    const url = new URL(env.MARQUEE_DATABASE_URL!);
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    const gate = createServer((socket) => {
      const upstream = connect(Number(url.port), url.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    const opened = new Promise<void>((resolve) => setTimeout(() => gate.listen(port, '127.0.0.1', () => resolve()), 4000));
    const gated = new URL(url);
    gated.port = String(port);
    try {
      const c = await startServer({ ...env, MARQUEE_DATABASE_URL: gated.toString() });
      try {
        await opened;
        assert.match(c.logs(), /connecting: the database is unavailable; trying again in 1 s/);
        assert.deepEqual(await similarIds(c, image(rows[0]!.id)), await similarIds(a, image(rows[0]!.id)), 'it answers as the others do');
      } finally {
        await c.stop();
      }
    } finally {
      gate.close();
    }
  });

  it('swaps a model on every server together: each loads it first, none fails a request, none answers with the old one for long after', async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'marquee-admin-'));
    const added = marquee(['models', 'add', join(ROOT, 'models', 'default')], { ...env, MARQUEE_DATA_DIR: dataDir, MARQUEE_CATALOG: '' });
    assert.equal(added.code, 0, added.stderr);
    const version = (JSON.parse(added.stdout) as { model_version: string }).model_version;
    const before = ((await (await fetch(`${b.url}/ready`)).json()) as { model_version: string }).model_version;
    assert.notEqual(version, before);

    const probe = rows[0]!.id;
    const answers: { server: string; at: number; status: number; version: string | null }[] = [];
    let running = true;
    const load = (server: RunningServer, name: string) =>
      (async () => {
        while (running) {
          const response = await fetch(`${server.url}/posters/${probe}/similar?k=3`);
          const body = (await response.json()) as { model_version?: string };
          answers.push({ server: name, at: performance.now(), status: response.status, version: body.model_version ?? null });
        }
      })();
    const loads = [load(a, 'A'), load(b, 'B')];
    const activated = await adminRequest(a.url, TOKEN, 'POST', `/admin/models/${version}/activate`);
    const flipped = performance.now();
    assert.equal(activated.status, 200, JSON.stringify(activated.body));
    const switched = await within('B answers with the new model', async () => answers.some((x) => x.server === 'B' && x.at > flipped && x.version === version));
    await new Promise((resolve) => setTimeout(resolve, 300));
    running = false;
    await Promise.all(loads);

    assert.deepEqual(answers.filter((x) => x.status !== 200), [], 'no request failed during the swap');
    const lastOldOnB = Math.max(...answers.filter((x) => x.server === 'B' && x.version === before).map((x) => x.at));
    assert.ok(lastOldOnB - flipped < 1000, `B answered with the old model ${(lastOldOnB - flipped).toFixed(0)} ms after the flip`);
    assert.ok(answers.filter((x) => x.server === 'A' && x.at > flipped).every((x) => x.version === version), 'A answers with the new model once it says so');
    assert.ok(b.logs().indexOf('candidate model loaded') < b.logs().indexOf('switched to the model another server made active'), 'B loaded it before the flip');
    t.diagnostic(`${answers.length} answers during the swap, none failed; B switched ${switched.toFixed(0)} ms after A's activation answered (B's last old answer ${(lastOldOnB - flipped).toFixed(0)} ms after)`);
  });

  it("runs one retrain cluster-wide: another server neither starts a second nor fails it when it starts, and fails it once its server dies", async (t) => {
    const admin = (server: RunningServer, method: string, path: string, body?: unknown) => adminRequest(server.url, TOKEN, method, path, body);
    const job = async (server: RunningServer, id: string) => (await admin(server, 'GET', `/admin/jobs/${id}`)).body as { state: string; error: string | null };
    const started = await admin(a, 'POST', '/admin/retrain', { mode: 'head', epochs: 1000 });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const id = started.body.id as string;
    const second = await admin(b, 'POST', '/admin/retrain', { mode: 'head', epochs: 1 });
    assert.equal(second.status, 409);
    assert.equal(second.body.error.code, 'job_running');

    await b.stop();
    b = await startServer({ ...env, MARQUEE_DATA_DIR: b.dataDir });
    assert.doesNotMatch((await job(b, id)).state, /failed/, "a server's start leaves another server's running job alone");
    await new Promise((resolve) => setTimeout(resolve, 4000)); // longer than a lease: A renews it
    assert.doesNotMatch((await job(b, id)).state, /failed/, 'a lease renewed holds');

    a.child.kill('SIGKILL');
    await a.stop();
    const lapsed = await within('the job of the dead server failed by the other', async () => (await job(b, id)).state === 'failed');
    assert.match((await job(b, id)).error ?? '', /interrupted: its server stopped renewing its lease/);
    t.diagnostic(`failed ${lapsed.toFixed(0)} ms after its server was killed (lease 3 s)`);
  });
});
