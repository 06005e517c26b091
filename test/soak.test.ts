import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { testModelDir } from './support/model.js';
import { startServer } from './support/server.js';
import { activateAction, activeVersion, runSoak } from './support/soak.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The quick form of bench/soak.ts: 30 s at c=16 with two swaps (to the shipped default model and back).
const TOKEN = 'soak-token';
const rows = subsetRows({ train: 80, val: 10, test: 20 });

describe('soak, quick form', () => {
  it('mixed traffic at c=16 through two model swaps: no error but overload, no file descriptor growth', { timeout: 180_000 }, async (t) => {
    const env = { MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')), MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
    const added = marquee(['models', 'add', join(process.cwd(), 'models', 'default')], env);
    assert.equal(added.code, 0, added.stderr);
    const other = JSON.parse(added.stdout).model_version as string;
    const server = await startServer(env);
    try {
      const first = await activeVersion(server, TOKEN);
      const result = await runSoak(server, {
        seconds: 30,
        concurrency: 16,
        intervalSeconds: 5,
        queries: rows.filter((r) => r.split === 'test'),
        catalogIds: rows.map((r) => r.id),
        actions: [
          { atSeconds: 8, name: 'swap', run: () => activateAction(server, TOKEN, () => other) },
          { atSeconds: 20, name: 'rollback', run: () => activateAction(server, TOKEN, () => first) },
        ],
        onInterval: (i) => t.diagnostic(`${i.at}s: ${i.requests} req, ${i.errors} errors, ${i.overload} 503, p50 ${i.p50.toFixed(0)} ms, p99 ${i.p99.toFixed(0)} ms, RSS ${i.rssMiB.toFixed(0)} MiB, ${i.fds} fds ${i.events.join('; ')}`),
      });
      assert.deepEqual(result.errors, []);
      const events = result.intervals.flatMap((i) => i.events);
      assert.ok(events.some((e) => e === `swap: ${other} active`) && events.some((e) => e === `rollback: ${first} active`), events.join('; '));
      assert.ok(result.requests > 100, `${result.requests} requests`);
      for (const i of result.intervals) assert.ok(i.requests - i.overload - i.errors > 0, `${i.at}s: no request answered`);
      const overloaded = result.intervals.reduce((n, i) => n + i.overload, 0);
      assert.ok(overloaded <= result.requests * 0.05, `${overloaded} of ${result.requests} requests refused as overload`);
      const fds = result.intervals.map((i) => i.fds);
      assert.ok(fds.at(-1)! <= fds[1]! + 4, `open file descriptors grew: ${fds.join(', ')}`);
    } finally {
      await server.stop();
    }
  });
});
