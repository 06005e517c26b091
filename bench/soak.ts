/**
 * The long form of the soak (test/soak.test.ts runs a 30 s one in CI):
 *
 *   node --import tsx bench/soak.ts [minutes=10] [concurrency=16] > bench/results/soak.md
 *
 * A real server (test model, 300 posters, the shipped default model registered beside it) under
 * mixed traffic from `concurrency` clients: similar and genre uploads, catalog pages, poster
 * images, metrics and readiness. A forced retrain starts at 40 % of the run and a rollback to the
 * first model follows it. Per minute: answers, errors (503 overload apart), p50/p99, the server's
 * RSS and open file descriptors. Targets: 0 errors but 503, RSS growth < 10 % after the first
 * minute (the last minute against the first; the highest minute is reported beside it), no
 * file-descriptor growth. Run it as the service runs: with jemalloc (LD_PRELOAD, see README).
 */
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCatalogDir, subsetRows } from '../test/support/catalog.js';
import { testModelDir } from '../test/support/model.js';
import { startServer } from '../test/support/server.js';
import { activateAction, activeVersion, retrainAction, runSoak } from '../test/support/soak.js';

const minutes = Number(process.argv[2] ?? 10);
const concurrency = Number(process.argv[3] ?? 16);
const TOKEN = 'soak-token';
const rows = subsetRows({ train: 240, val: 40, test: 20 });
const env = { MARQUEE_DATA_DIR: mkdtempSync(join(tmpdir(), 'marquee-data-')), MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN };
const server = await startServer(env);
try {
  const first = await activeVersion(server, TOKEN);
  const result = await runSoak(server, {
    seconds: minutes * 60,
    concurrency,
    intervalSeconds: 60,
    queries: rows.filter((r) => r.split !== 'train'),
    catalogIds: rows.map((r) => r.id),
    actions: [
      { atSeconds: minutes * 60 * 0.4, name: 'retrain', run: () => retrainAction(server, TOKEN) },
      { atSeconds: minutes * 60 * 0.7, name: 'rollback', run: () => activateAction(server, TOKEN, () => first) },
    ],
    onInterval: (i) => process.stderr.write(`${JSON.stringify(i)}\n`),
  });
  const rows_ = result.intervals;
  const baseline = rows_[0]!;
  const peakRss = Math.max(...rows_.slice(1).map((i) => i.rssMiB));
  const peakGrowth = (peakRss - baseline.rssMiB) / baseline.rssMiB;
  // Growth is what stays: the last minute against the first. The peak (a swap holds two models) is reported beside it.
  const growth = (rows_.at(-1)!.rssMiB - baseline.rssMiB) / baseline.rssMiB;
  const errors = rows_.reduce((n, i) => n + i.errors, 0);
  const overload = rows_.reduce((n, i) => n + i.overload, 0);
  const fds = rows_.map((i) => i.fds);
  const lines = [
    '# Soak, long form',
    '',
    `${new Date().toISOString()}, ${cpus()[0]?.model ?? 'cpu'} (${cpus().length} cores), Node ${process.version}; \`${process.env.LD_PRELOAD ? `LD_PRELOAD=${process.env.LD_PRELOAD} ` : ''}${process.env.MALLOC_ARENA_MAX ? `MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX} ` : ''}node --import tsx bench/soak.ts ${minutes} ${concurrency}\`.`,
    `A real server (test model 64x96, ${rows.length} posters), ${concurrency} clients in this process sending similar 40 %, genre 25 %, browse 15 %, image 10 %, metrics 5 %, ready 5 %; a forced retrain (head, 1 epoch) at ${(minutes * 0.4).toFixed(0)} min, a rollback to the first model at ${(minutes * 0.7).toFixed(0)} min.`,
    '',
    `- Requests: ${result.requests} (${(result.requests / (minutes * 60)).toFixed(0)}/s); errors other than 503: **${errors}** (target 0); 503 overload: ${overload}.`,
    `- RSS: ${baseline.rssMiB.toFixed(0)} MiB after the first minute, ${rows_.at(-1)!.rssMiB.toFixed(0)} MiB at the end: **${(growth * 100).toFixed(1)} %** growth (target < 10 %); the highest minute ${peakRss.toFixed(0)} MiB (${(peakGrowth * 100).toFixed(1)} %: a swap holds two models while requests finish on the old one).`,
    `- Open file descriptors per minute: ${fds.join(', ')} (target: no growth).`,
    '',
    '| minute | requests | errors | 503 | p50 ms | p99 ms | RSS MiB | fds | events |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows_.map((i, n) => `| ${n + 1} | ${i.requests} | ${i.errors} | ${i.overload} | ${i.p50.toFixed(0)} | ${i.p99.toFixed(0)} | ${i.rssMiB.toFixed(0)} | ${i.fds} | ${i.events.join('; ')} |`),
    '',
    ...(result.errors.length ? ['Errors:', '', ...result.errors.map((e) => `- ${e}`), ''] : []),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await server.stop();
}
