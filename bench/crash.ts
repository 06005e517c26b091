/**
 * The long form of the crash harness (test/crash.test.ts runs the quick one in CI):
 *
 *   node --import tsx bench/crash.ts [kills=207] [seed=11] > bench/results/crash.md
 *
 * Kills the real server with SIGKILL at random moments in each stage (a first start's import,
 * embedding and index build; each state of a retrain; a swap; live adds and deletes), restarts it on the same data dir
 * and checks it: ready, the active model complete, SQLite's integrity_check, every poster in the
 * index and nothing else, no leftovers (job files, temporary files, unregistered models, training
 * processes), every acknowledged job and activation kept. Prints a table of where each kill landed.
 */
import { cpus } from 'node:os';
import { runCrashes, STAGES, type Kill } from '../test/support/crash.js';

const kills = Number(process.argv[2] ?? 23 * STAGES.length);
const seed = Number(process.argv[3] ?? 11);
const started = performance.now();
const done: Kill[] = await runCrashes({
  kills,
  seed,
  onKill: (kill) => process.stderr.write(`kill ${kill.n}/${kills}: ${kill.target} +${kill.delayMs} ms -> ${kill.landed}, ready in ${kill.restartMs} ms${kill.problems.length ? ` PROBLEMS: ${kill.problems.join('; ')}` : ''}\n`),
});
const minutes = (performance.now() - started) / 60_000;
const inconsistent = done.filter((k) => k.problems.length > 0);
const landed = [...new Set(done.map((k) => k.landed))].sort();
const restart = done.map((k) => k.restartMs).sort((a, b) => a - b);
const quantile = (q: number) => restart[Math.min(restart.length - 1, Math.floor(q * restart.length))] ?? 0;
const lines = [
  '# Crash consistency, long form',
  '',
  `${new Date().toISOString()}, ${cpus()[0]?.model ?? 'cpu'} (${cpus().length} cores), Node ${process.version}; \`node --import tsx bench/crash.ts ${kills} ${seed}\`, ${minutes.toFixed(0)} min.`,
  'Test model (64x96), a catalog of 300 posters (3,000 for the index-build kills); retrains are `mode: head, epochs: 1, force: true`; live writes are 4 clients adding posters through the API and deleting every other one.',
  '',
  `- Kills: **${done.length}**; restarts that failed a check: **${inconsistent.length}**; acknowledged writes lost: **${inconsistent.filter((k) => k.problems.some((p) => /acknowledged/.test(p))).length}**.`,
  `- Restart to ready after a kill: median ${quantile(0.5)} ms, p95 ${quantile(0.95)} ms, max ${restart.at(-1) ?? 0} ms.`,
  '',
  'Where each kill landed (rows: the stage aimed at, a random delay into it; columns: the stage the log shows it was in):',
  '',
  `| aimed at | ${landed.join(' | ')} | checks failed |`,
  `|---|${landed.map(() => '---:').join('|')}|---:|`,
  ...STAGES.map((stage) => {
    const row = done.filter((k) => k.target === stage);
    return `| ${stage} | ${landed.map((l) => row.filter((k) => k.landed === l).length || '').join(' | ')} | ${row.filter((k) => k.problems.length).length} |`;
  }),
  '',
  ...(inconsistent.length ? ['Failed checks:', '', ...inconsistent.map((k) => `- kill ${k.n} (${k.target} -> ${k.landed}): ${k.problems.join('; ')}`), ''] : []),
];
process.stdout.write(`${lines.join('\n')}\n`);
