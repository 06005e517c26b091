import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { testModelDir } from './support/model.js';
import { adminRequest, startServer, upload, type RunningServer } from './support/server.js';


const TOKEN = 'disk-token';
const admin = (server: RunningServer, method: string, path: string, body?: unknown) => adminRequest(server.url, TOKEN, method, path, body);
const rows = subsetRows({ train: 100, val: 20, test: 10 });
const taken = new Set(rows.map((r) => r.id));
const spare = sharedRows().filter((r) => r.split === 'train' && !taken.has(r.id));
const added = spare.slice(0, 20); // imported beside the server before the disk fills: embedded at the next start
// (The test model is a whole ResNet-50: its ONNX file and checkpoint take 200 MB of the disk, a retrain's 400 more while it registers its model.)
const refused = spare.slice(20, 30); // imported while the disk is full

/** A small tmpfs to fill; null only where mounting needs a root this process is not (a mount that fails as root fails the suite). */
function mount(): string | null {
  if (process.getuid?.() !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), 'marquee-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=900m', 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}

const dataDir = mount();
const ballast: string[] = [];

/** Fills the disk to the last byte with ballast files (1 MiB, then 4 KiB pieces). */
function fill(): void {
  for (const size of [2 ** 20, 4096]) {
    for (;;) {
      const file = join(dataDir!, `ballast-${ballast.length}`);
      try {
        writeFileSync(file, Buffer.alloc(size));
        ballast.push(file);
      } catch (error) {
        rmSync(file, { force: true });
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
        break;
      }
    }
  }
}

/** Frees `bytes` of ballast (all of it by default), newest first. */
function free(bytes = Infinity): void {
  let freed = 0;
  while (ballast.length > 0 && freed < bytes) {
    const file = ballast.pop()!;
    freed += readFileSync(file).length;
    rmSync(file);
  }
}

function temporaryFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.tmp-\d+/.test(f));
}

function posterCount(): number {
  const db = new Database(join(dataDir!, 'marquee.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM posters').get() as { n: number }).n;
  } finally {
    db.close();
  }
}


async function waitForJob(server: RunningServer, id: string): Promise<any> {
  for (;;) {
    const { body } = await admin(server, 'GET', `/admin/jobs/${id}`);
    if (['succeeded', 'failed', 'cancelled', 'rejected'].includes(body.state)) return body;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('a full disk', { skip: dataDir ? false : 'mounting a tmpfs needs root (CI runs as root)' }, () => {
  const env = { MARQUEE_DATA_DIR: dataDir ?? '', MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
  let server: RunningServer;
  const query = readFileSync(posterPath(rows[3]!.id));

  before(async () => {
    server = await startServer(env);
  });
  after(async () => {
    await server?.stop();
    if (dataDir) {
      execFileSync('umount', [dataDir]);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('answers queries, refuses writes with a clear error and keeps nothing half-written; all works again once space is freed', { timeout: 300_000 }, async () => {
    const besideImport = marquee(['import', makeCatalogDir(added)], env);
    assert.equal(besideImport.code, 0, `an import beside the running server: ${besideImport.stderr}`);
    // Every later SQLite write must grow a file, so it meets the full disk too.
    const db = new Database(join(dataDir!, 'marquee.db'));
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    fill();

    for (const path of ['/posters/similar?k=3', '/posters/genre?k=3']) {
      const answer = await upload(`${server.url}${path}`, query);
      assert.equal(answer.status, 200, `${path} on a full disk: ${JSON.stringify(answer.body)}`);
    }
    assert.equal((await fetch(`${server.url}/posters?limit=5`)).status, 200);

    const retrain = await admin(server, 'POST', '/admin/retrain', { mode: 'head', epochs: 1, force: true });
    if (retrain.status === 202) {
      const job = await waitForJob(server, retrain.body.id);
      assert.equal(job.state, 'failed');
      assert.match(job.error, /disk is full/);
    } else {
      assert.equal(retrain.status, 507, JSON.stringify(retrain.body));
      assert.equal(retrain.body.error.code, 'insufficient_storage');
    }

    const before = posterCount();
    const images = () => readdirSync(join(dataDir!, 'images')).length;
    const imagesBefore = images();
    const form = new FormData();
    form.append('id', refused[0]!.id);
    form.append('genres', 'Drama');
    form.append('image', new Blob([new Uint8Array(readFileSync(posterPath(refused[0]!.id)))], { type: 'image/jpeg' }), 'p.jpg');
    const add = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(add.status, 507, await add.clone().text());
    assert.equal(((await add.json()) as any).error.code, 'insufficient_storage');
    assert.equal(images(), imagesBefore, 'no image file of the refused add');
    assert.equal((await fetch(`${server.url}/posters/${refused[0]!.id}`)).status, 404);
    // A batch on the full disk: each poster answers for itself (507), the batch itself is answered.
    const batch = await admin(server, 'POST', '/admin/posters/batch', {
      posters: refused.slice(1, 3).map((r) => ({ id: r.id, genres: ['Drama'], image: readFileSync(posterPath(r.id)).toString('base64') })),
    });
    assert.equal(batch.status, 200, JSON.stringify(batch.body));
    assert.deepEqual(batch.body.results.map((r: { status: number; error?: { code: string } }) => [r.status, r.error?.code]), [[507, 'insufficient_storage'], [507, 'insufficient_storage']]);
    assert.equal(images(), imagesBefore, 'no image file of the refused batch');
    const refusedImport = marquee(['import', makeCatalogDir(refused)], env);
    assert.equal(refusedImport.code, 1, refusedImport.stderr);
    assert.match(refusedImport.stderr, /marquee: the data directory's disk is full; free space and try again/);
    assert.equal(posterCount(), before, 'no poster row of the refused import');
    assert.deepEqual(temporaryFiles(dataDir!), [], 'no half-written file');
    assert.equal((await upload(`${server.url}/posters/similar?k=3`, query)).status, 200, 'still answering');

    // A restart must embed the posters imported beside it: with a sliver of space it says why it cannot.
    await server.stop();
    free(16 * 1024);
    const refusedStart = await startServer(env, { waitReady: false });
    const code = await new Promise<number | null>((resolve) => refusedStart.child.once('exit', resolve));
    assert.equal(code, 1, refusedStart.logs().slice(-2000));
    assert.match(refusedStart.logs(), /disk is full; free space and try again/);
    assert.deepEqual(temporaryFiles(dataDir!), []);

    free();
    server = await startServer(env);
    const ready = await (await fetch(`${server.url}/ready`)).json();
    assert.equal(ready.posters, rows.length + added.length, 'every poster embedded and indexed once space was freed');
    const importAgain = marquee(['import', makeCatalogDir(refused)], env);
    assert.equal(importAgain.code, 0, importAgain.stderr);
    assert.equal(JSON.parse(importAgain.stdout.trim().split('\n').pop()!).added, refused.length);
    const form2 = new FormData();
    form2.append('id', 'after-free');
    form2.append('genres', 'Drama');
    form2.append('image', new Blob([new Uint8Array(readFileSync(posterPath(spare[40]!.id)))], { type: 'image/jpeg' }), 'p.jpg');
    assert.equal((await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form2, headers: { authorization: `Bearer ${TOKEN}` } })).status, 201);
    const job = await admin(server, 'POST', '/admin/retrain', { mode: 'head', epochs: 1, force: true });
    assert.equal(job.status, 202, JSON.stringify(job.body));
    const done = await waitForJob(server, job.body.id);
    assert.equal(done.state, 'succeeded', `${done.error}`);
  });
});
