/**
 * The long form of the upload fuzzer (test/fuzz-upload.test.ts runs the quick one in CI):
 *
 *   node --import tsx bench/fuzz.ts [cases=20000] [seed=7] > bench/results/fuzz.md
 *
 * A real server on 127.0.0.1 with the test model and a small catalog; cases sent one at a time
 * to /posters/similar and /posters/genre. Reports cases/s, the status mix, the slowest inputs,
 * the server's RSS over the run, and every case outside the contract (kept in test/fuzz-corpus).
 */
import { cpus } from 'node:os';
import { makeCatalogDir, subsetRows } from '../test/support/catalog.js';
import { fuzzCase, fuzzSeeds, keepInCorpus, rssOf, sendCase } from '../test/support/fuzz.js';
import { testModelDir } from '../test/support/model.js';
import { startServer } from '../test/support/server.js';

const cases = Number(process.argv[2] ?? 20_000);
const seed = Number(process.argv[3] ?? 7);
const seeds = await fuzzSeeds();
const server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(subsetRows({ train: 30, val: 5, test: 5 })), MARQUEE_BASE_MODEL: testModelDir() });
const pid = server.child.pid!;
const statuses = new Map<number, number>();
const slowest: { ms: number; id: string; mutation: string; status: number }[] = [];
const failures: string[] = [];
const rss: number[] = [];
const started = performance.now();
try {
  for (let i = 0; i < cases; i++) {
    const fuzz = fuzzCase(seed, i, seeds);
    const outcome = await sendCase(`${server.url}${i % 2 ? '/posters/similar?k=3' : '/posters/genre?k=3'}`, fuzz);
    statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
    slowest.push({ ms: outcome.ms, id: fuzz.id, mutation: fuzz.mutation, status: outcome.status });
    slowest.sort((a, b) => b.ms - a.ms).splice(10);
    if (outcome.problem) {
      failures.push(`${fuzz.id} ${fuzz.mutation}: ${outcome.problem}`);
      keepInCorpus(fuzz, outcome.problem);
    }
    if (i % 1000 === 0) rss.push(await rssOf(pid));
  }
  rss.push(await rssOf(pid));
  const alive = (await fetch(`${server.url}/health`)).status === 200;
  const seconds = (performance.now() - started) / 1000;
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  const lines = [
    `# Upload fuzzing, long form`,
    '',
    `${new Date().toISOString()}, ${cpus()[0]?.model ?? 'cpu'} (${cpus().length} cores), Node ${process.version}; \`node --import tsx bench/fuzz.ts ${cases} ${seed}\`.`,
    '',
    `- Cases: ${cases} (seed ${seed}), one at a time, in ${seconds.toFixed(0)} s: **${(cases / seconds).toFixed(1)} cases/s**.`,
    `- Outside the contract (5xx, hang > 10 s, body not in the error shape): **${failures.length}**.`,
    `- Server alive at the end: ${alive ? 'yes' : '**no**'}. RSS every 1,000 cases (MiB): ${rss.map(mib).join(', ')}.`,
    `- Status mix: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s} × ${n}`).join(', ')}.`,
    '',
    '| slowest | ms | status | mutation |',
    '|---|---:|---:|---|',
    ...slowest.map((s) => `| ${s.id} | ${s.ms.toFixed(0)} | ${s.status} | ${s.mutation.replaceAll('|', '\\|')} |`),
    '',
    ...(failures.length ? ['Failures:', '', ...failures.map((f) => `- ${f}`), ''] : []),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await server.stop();
}
