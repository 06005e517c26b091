// Uploads are admitted against a decode budget computed from their headers: a flood of small
// PNGs that each decode to the pixel limit gets answers of 200 or 503, never more memory.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { adminRequest, startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 20, val: 0, test: 0 });
const MAX_PIXELS = 4_000_000;
const BUDGET_MB = 48; // the least that holds one 16-bit RGBA image at the pixel limit (42 MB)
const FLOOD = 96;
const MiB = 2 ** 20;
const TOKEN = 'budget-token';
let server: RunningServer;

/** A field of /proc/<pid>/status, in bytes (kB there); fails loudly where it cannot be read. */
function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  assert.ok(kb, `${field} of ${pid} is readable`);
  return Number(kb) * 1024;
}

function metric(text: string, name: string): number {
  const value = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1];
  assert.ok(value !== undefined, `${name} is on /metrics`);
  return Number(value);
}

describe('the decode budget', () => {
  before(async () => {
    server = await startServer({
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_MAX_PIXELS: String(MAX_PIXELS),
      MARQUEE_DECODE_BUDGET_MB: String(BUDGET_MB),
      // More decodes at once than the budget holds, so that the budget is what bounds them.
      MARQUEE_DECODE_CONCURRENCY: '16',
      MARQUEE_QUEUE_MAX: String(FLOOD * 2),
      MARQUEE_ADMIN_TOKEN: TOKEN,
    });
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
  });

  it('answers a flood of pixel-limit PNGs with 200 or 503 + Retry-After, within the budget', async () => {
    // 2000x2000 of one colour with an alpha channel: a few KB of PNG that decode to 16 MB (28 MB budgeted: a large decode).
    const png = await sharp({ create: { width: 2000, height: 2000, channels: 4, background: { r: 180, g: 40, b: 90, alpha: 1 } } }).png().toBuffer();
    assert.ok(png.length < 128 * 1024, `${png.length} bytes`);
    const pid = server.child.pid!;
    // Reset the peak RSS to the idle RSS (Linux: writing 5 to clear_refs resets VmHWM).
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    const idle = procStatus(pid, 'VmHWM');

    const results = await Promise.all(Array.from({ length: FLOOD }, () => upload(`${server.url}/posters/similar?k=2`, png, { type: 'image/png', filename: 'flood.png' })));
    const peakRss = procStatus(pid, 'VmHWM');

    const statuses = results.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 200 || s === 503), `statuses: ${statuses}`);
    const refused = results.filter((r) => r.status === 503);
    assert.ok(refused.length > 0, "the budget refused some");
    assert.ok(refused.length < FLOOD, 'and served some');
    for (const r of refused) {
      assert.equal(r.body.error.code, 'overloaded');
      assert.equal(r.headers.get('retry-after'), '1');
    }

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const peak = metric(metrics, 'marquee_decode_bytes_peak');
    assert.equal(metric(metrics, 'marquee_decode_budget_bytes'), BUDGET_MB * MiB);
    assert.ok(peak >= 28e6 && peak <= BUDGET_MB * MiB, `peak in use ${peak / MiB} MiB, budget ${BUDGET_MB} MiB`);
    assert.equal(metric(metrics, 'marquee_decode_bytes_in_use'), 0);
    assert.equal(metric(metrics, 'marquee_decode_refusals_total'), refused.length);
    // Decoded all at once, as before the budget, the flood took 96 x 12 MB of RGB, kept until embedded (+862 MB).
    const grew = (peakRss - idle) / MiB;
    assert.ok(grew < BUDGET_MB + 96, `peak RSS grew ${grew.toFixed(0)} MiB over the idle ${(idle / MiB).toFixed(0)} MiB (budget ${BUDGET_MB} MiB)`);

    // Alive, and serving ordinary posters.
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const ordinary = await upload(`${server.url}/posters/similar?k=2`, readFileSync(posterPath(rows[0]!.id)));
    assert.equal(ordinary.status, 200);
  });

  it("decodes a batch's pixel-limit posters in turn: all added, within the budget", async () => {
    const posters = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => ({
        id: `flood-${i}`,
        genres: ['Drama'],
        image: (await sharp({ create: { width: 2000, height: 2000, channels: 3, background: { r: 20 * i, g: 200 - 20 * i, b: 90 } } }).png().toBuffer()).toString('base64'),
      })),
    );
    // Beside it, uploads that may be refused: the batch's items are not.
    const [batch, ...beside] = await Promise.all([
      adminRequest(server.url, TOKEN, 'POST', '/admin/posters/batch', { posters, on_duplicate: 'allow' }),
      ...Array.from({ length: 8 }, () => upload(`${server.url}/posters/similar?k=2`, Buffer.from(posters[0]!.image, 'base64'), { type: 'image/png' })),
    ]);
    assert.equal(batch.status, 200, JSON.stringify(batch.body));
    assert.deepEqual(batch.body.results.map((r: { status: number }) => r.status), Array(8).fill(201));
    assert.ok(beside.every((r) => r.status === 200 || r.status === 503), `${beside.map((r) => r.status)}`);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.ok(metric(metrics, 'marquee_decode_bytes_peak') <= BUDGET_MB * MiB);
  });
});
