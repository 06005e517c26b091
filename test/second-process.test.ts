import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { marquee, marqueeAsync } from './support/cli.js';
import { checkRestart } from './support/crash.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 60, val: 10, test: 10 });
const taken = new Set(rows.map((r) => r.id));
const extra = sharedRows().filter((r) => r.split === 'train' && !taken.has(r.id)).slice(0, 15);

describe('a second process on the data dir of a running server', () => {
  const env = { MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')), MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: 'second-token' };
  let server: RunningServer;
  before(async () => {
    server = await startServer(env);
  });
  after(async () => {
    await server.stop();
  });

  it('refuses what would undo the server\'s work, naming the server', () => {
    const pid = server.child.pid!;
    for (const args of [['serve'], ['index'], ['train', '--epochs', '1'], ['models', 'add', testModelDir()]]) {
      const result = marquee(args, { ...env, PORT: '0' });
      assert.equal(result.code, 2, `marquee ${args[0]}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`is in use by marquee serve \\(pid ${pid}, since `), args[0]);
    }
    assert.match(marquee(['train', '--epochs', '1'], env).stderr, /retrain through POST \/admin\/retrain/);
  });

  it('imports and evaluates beside it, both at once, while it answers every query', async () => {
    const query = readFileSync(posterPath(rows[2]!.id));
    let querying = true;
    const statuses: number[] = [];
    const client = (async () => {
      while (querying) statuses.push((await upload(`${server.url}/posters/similar?k=3`, query)).status);
    })();
    const out = mkdtempSync(join(tmpdir(), 'marquee-eval-'));
    const [imported, evaluated] = await Promise.all([
      marqueeAsync(['import', makeCatalogDir(extra)], env),
      marqueeAsync(['eval', '--json', join(out, 'eval.json'), '--out', join(out, 'eval.md')], env),
    ]);
    querying = false;
    await client;
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal(JSON.parse(imported.stdout.trim().split('\n').pop()!).added, extra.length);
    assert.equal(evaluated.code, 0, evaluated.stderr);
    assert.doesNotMatch(imported.stderr + evaluated.stderr, /SQLITE_BUSY|database is locked/);
    assert.ok(statuses.length >= 3, `${statuses.length} queries`);
    assert.deepEqual(statuses.filter((s) => s !== 200), []);

    // The next start serves the imported posters too, and is whole.
    await server.stop();
    server = await startServer(env);
    assert.equal((await (await fetch(`${server.url}/ready`)).json()).posters, rows.length + extra.length);
    assert.deepEqual(await checkRestart(server, { jobs: [], activated: null }), []);
  });
});
