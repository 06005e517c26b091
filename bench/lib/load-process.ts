/**
 * autocannon in a process of its own, so that the load generator's JavaScript does not share the
 * server's event loop or the bench's: `node --import tsx bench/lib/load-process.ts '<options JSON>'`
 * prints one JSON line, autocannon's result, the CPU this process took, and the 2xx latencies'
 * percentiles in fractional ms (autocannon's histogram keeps whole ms: too coarse at c=1, where
 * a request takes 7-9 ms and the target is a ratio to 1.2).
 */
import autocannon from 'autocannon';
import { summarise } from './stats.js';

const options = JSON.parse(process.argv[2] ?? '{}') as autocannon.Options;
const started = process.hrtime.bigint();
const cpuBefore = process.cpuUsage();
const latencies: number[] = [];
const result = await new Promise<autocannon.Result>((resolve, reject) => {
  const instance = autocannon(options, (error: unknown, done: autocannon.Result) => (error ? reject(error) : resolve(done)));
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
  });
});
const cpu = process.cpuUsage(cpuBefore);
const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
const exact = summarise(latencies);
process.stdout.write(`${JSON.stringify({ result, latencyMs: { p50: exact.median, p90: exact.p90, p99: exact.p99, mean: exact.mean }, cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds })}\n`);
