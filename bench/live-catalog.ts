/**
 * The live catalog under load (issue 9's targets):
 *
 *   node --import tsx bench/live-catalog.ts [posters=1000] [writers=8] > bench/results/live-catalog.md
 *
 * A real server (test model, 300 posters). While 2 clients query without pause, `writers` clients
 * add `posters` posters through POST /admin/posters (real posters of the shared catalog, each its own
 * picture), then delete them all. Checked key by key: after the adds every added poster is the
 * first hit and catalog_match of its own image; after the deletes none is found, GET answers 404,
 * SQLite holds exactly the original catalog, and a restart agrees with SQLite (crash harness checks).
 * Reports the add's latency and its Server-Timing parts (embed = decode + forward pass; lock; store).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from '../test/support/catalog.js';
import { checkRestart } from '../test/support/crash.js';
import { testModelDir } from '../test/support/model.js';
import { startServer, upload } from '../test/support/server.js';

const count = Number(process.argv[2] ?? 1000);
const writers = Number(process.argv[3] ?? 8);
const TOKEN = 'live-bench';
const rows = subsetRows({ train: 240, val: 40, test: 20 });
const taken = new Set(rows.map((r) => r.id));
const pool = sharedRows().filter((r) => !taken.has(r.id)).slice(0, count);
const env: Record<string, string> = { MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
let server = await startServer(env);
env.MARQUEE_DATA_DIR = server.dataDir;
const quantile = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))] ?? 0;

const failedQueries: string[] = [];
let queries = 0;
let querying = true;
const readers = Array.from({ length: 2 }, async (_, n) => {
  const bytes = readFileSync(posterPath(rows[n]!.id));
  while (querying) {
    const answer = await upload(`${server.url}/posters/similar?k=8`, bytes);
    queries += 1;
    if (answer.status !== 200) failedQueries.push(`${answer.status}`);
  }
});

async function inParallel<T>(items: T[], work: (item: T) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: writers }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
  return (performance.now() - started) / 1000;
}

const totals: number[] = [];
const parts = { embed: [] as number[], lock: [] as number[], store: [] as number[] };
const problems: string[] = [];
const addSeconds = await inParallel(pool, async (poster) => {
  const form = new FormData();
  form.append('id', poster.id);
  form.append('genres', poster.genres);
  form.append('image', new Blob([new Uint8Array(readFileSync(posterPath(poster.id)))], { type: 'image/jpeg' }), 'p.jpg');
  const t0 = performance.now();
  const response = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
  totals.push(performance.now() - t0);
  if (response.status !== 201) problems.push(`add ${poster.id}: ${response.status} ${await response.text()}`);
  else await response.arrayBuffer();
  for (const part of (response.headers.get('server-timing') ?? '').split(',')) {
    const match = /(\w+);dur=([\d.]+)/.exec(part.trim());
    if (match && match[1]! in parts) parts[match[1] as keyof typeof parts].push(Number(match[2]));
  }
});
let notFirst = 0;
await inParallel(pool, async (poster) => {
  const answer = await upload(`${server.url}/posters/similar?k=1`, readFileSync(posterPath(poster.id)));
  if (answer.body.catalog_match?.id !== poster.id || answer.body.results[0]?.id !== poster.id) notFirst += 1;
});
const deleteTimes: number[] = [];
const deleteSeconds = await inParallel(pool, async (poster) => {
  const t0 = performance.now();
  const response = await fetch(`${server.url}/admin/posters/${poster.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
  deleteTimes.push(performance.now() - t0);
  if (response.status !== 204) problems.push(`delete ${poster.id}: ${response.status}`);
});
let stale = 0;
await inParallel(pool, async (poster) => {
  const answer = await upload(`${server.url}/posters/similar?k=8`, readFileSync(posterPath(poster.id)));
  const get = await fetch(`${server.url}/posters/${poster.id}`);
  await get.arrayBuffer();
  if (answer.body.catalog_match !== null || answer.body.results.some((r: { id: string }) => r.id === poster.id) || get.status !== 404) stale += 1;
});
querying = false;
await Promise.all(readers);
const db = new Database(join(server.dataDir, 'marquee.db'), { readonly: true });
const ids = (db.prepare('SELECT id FROM posters ORDER BY id').all() as { id: string }[]).map((r) => r.id);
db.close();
const sameCatalog = JSON.stringify(ids) === JSON.stringify(rows.map((r) => r.id).sort());
await server.stop();
server = await startServer(env);
const restart = await checkRestart(server, { jobs: [], activated: null, deleted: pool.map((p) => p.id) });
await server.stop();

const ms = (v: number) => v.toFixed(1);
const lines = [
  '# The live catalog under load',
  '',
  `${new Date().toISOString()}, ${cpus()[0]?.model ?? 'cpu'} (${cpus().length} cores), Node ${process.version}; \`node --import tsx bench/live-catalog.ts ${count} ${writers}\`.`,
  `A real server (test model 64x96, ${rows.length} posters); ${writers} writers add ${count} posters through POST /admin/posters, then delete them, while 2 clients query /posters/similar without pause.`,
  '',
  `- Adds: ${count} in ${addSeconds.toFixed(1)} s (${(count / addSeconds).toFixed(0)}/s); latency p50 ${ms(quantile(totals, 0.5))} ms, p99 ${ms(quantile(totals, 0.99))} ms.`,
  `- The add without the forward pass (Server-Timing store: image file, SQLite transaction, index): **p50 ${ms(quantile(parts.store, 0.5))} ms**, p99 ${ms(quantile(parts.store, 0.99))} ms (target p50 < 100 ms); embed p50 ${ms(quantile(parts.embed, 0.5))} ms; waiting for the write lock p50 ${ms(quantile(parts.lock, 0.5))} ms.`,
  `- After the adds, posters not the first hit and catalog_match of their own image: **${notFirst}** of ${count}.`,
  `- Deletes: ${count} in ${deleteSeconds.toFixed(1)} s; latency p50 ${ms(quantile(deleteTimes, 0.5))} ms, p99 ${ms(quantile(deleteTimes, 0.99))} ms.`,
  `- After the deletes, deleted posters still found (in results, as catalog_match, or by GET): **${stale}** of ${count}; SQLite holds exactly the original catalog: **${sameCatalog ? 'yes' : 'no'}**.`,
  `- Queries meanwhile: ${queries}, failed: **${failedQueries.length}**. Failed writes: **${problems.length}**.`,
  `- Restart after it all: ${restart.length === 0 ? '**consistent** (integrity_check, every SQLite poster in the index and nothing else, no deleted poster back)' : `**${restart.join('; ')}**`}.`,
  '',
  ...(problems.length ? ['Failed writes:', '', ...problems.slice(0, 20).map((p) => `- ${p}`), ''] : []),
];
process.stdout.write(`${lines.join('\n')}\n`);
