/**
 * autocannon in a process of its own, so that the load generator's JavaScript does not share the
 * server's event loop or the bench's: `node --import tsx bench/lib/load-process.ts '<options JSON>'`
 * prints one JSON line, autocannon's result and the CPU this process took.
 */
import autocannon from 'autocannon';

const options = JSON.parse(process.argv[2] ?? '{}') as autocannon.Options;
const started = process.hrtime.bigint();
const cpuBefore = process.cpuUsage();
const result = await autocannon(options);
const cpu = process.cpuUsage(cpuBefore);
const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(`${JSON.stringify({ result, cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds })}\n`);
