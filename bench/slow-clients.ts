/**
 * Slow clients against a real server (issue 15's timeouts):
 *
 *   nice node --import tsx bench/slow-clients.ts [clients=500] > bench/results/slow-clients.md
 *
 * A real server (test model, 100 posters) with the default timeouts (MARQUEE_HEADERS_TIMEOUT_MS
 * 10 s, MARQUEE_REQUEST_TIMEOUT_MS 60 s). Ordinary traffic (4 clients uploading posters to
 * /posters/similar without pause, 1 polling /health) runs for 15 s alone, then beside `clients`
 * connections that each send one byte a second: half trickle their headers, half send complete
 * headers of a multipart upload and trickle its body. Reports when each slow connection was cut off
 * against its timeout and what it was answered, the ordinary traffic's successes and latency alone
 * and beside them, and the server's RSS and open sockets.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { connect } from 'node:net';
import { makeCatalogDir, posterPath, subsetRows } from '../test/support/catalog.js';
import { testModelDir } from '../test/support/model.js';
import { startServer, upload } from '../test/support/server.js';
import { summarise } from './lib/stats.js';

const clients = Number(process.argv[2] ?? 500);
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;
const BASELINE_MS = 15_000;
const rows = subsetRows({ train: 100, val: 0, test: 0 });
const loadAtStart = loadavg()[0]!;
const server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir() });
const pid = server.child.pid!;
const host = new URL(server.url).host;

/** The server's resident memory (MiB) and open file descriptors, from /proc. */
function serverUsage(): { rssMiB: number; fds: number } {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (!rss) throw new Error(`no VmRSS for ${pid}`);
  return { rssMiB: Number(rss) / 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

interface SlowResult {
  kind: 'headers' | 'body';
  closedAfterMs: number;
  status: string;
  bytesSent: number;
}

/** One connection sending `head` at once, then one byte of `trickle` a second until the server closes it. */
function slowConnection(kind: SlowResult['kind'], head: string, trickle: string): Promise<SlowResult> {
  const url = new URL(server.url);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let answer = '';
    let started = 0;
    let sent = 0;
    let trickled = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.setEncoding('latin1').on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => {});
    socket.on('connect', () => {
      started = performance.now();
      socket.write(head, 'latin1');
      sent = head.length;
      timer = setInterval(() => {
        if (socket.destroyed) return;
        // Never past the request's end: a finished request would be answered, not cut off.
        if (performance.now() - started > REQUEST_TIMEOUT_MS * 2) return void socket.destroy();
        socket.write(trickle[trickled++ % trickle.length]!, 'latin1');
        sent += 1;
      }, 1000);
    });
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ kind, closedAfterMs: performance.now() - started, status: /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 'none', bytesSent: sent });
    });
  });
}

interface Sample {
  at: number;
  ms: number;
  ok: boolean;
}

const samples: Sample[] = [];
const failures: string[] = [];
let running = true;
const t0 = performance.now();
const ordinary = [
  ...Array.from({ length: 4 }, async (_, n) => {
    const bytes = readFileSync(posterPath(rows[n]!.id));
    while (running) {
      const started = performance.now();
      const answer = await upload(`${server.url}/posters/similar?k=8`, bytes).catch((error: Error) => ({ status: 0, body: error.message }));
      const ok = answer.status === 200;
      samples.push({ at: started - t0, ms: performance.now() - started, ok });
      if (!ok) failures.push(`similar: ${answer.status} ${JSON.stringify(answer.body).slice(0, 120)}`);
    }
  }),
  (async () => {
    while (running) {
      const started = performance.now();
      const response = await fetch(`${server.url}/health`).catch(() => null);
      const ok = response?.status === 200;
      await response?.arrayBuffer();
      samples.push({ at: started - t0, ms: performance.now() - started, ok });
      if (!ok) failures.push(`health: ${response?.status ?? 'no answer'}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })(),
];

const usage: { at: number; rssMiB: number; fds: number }[] = [];
const sampler = setInterval(() => usage.push({ at: performance.now() - t0, ...serverUsage() }), 500);
await new Promise((resolve) => setTimeout(resolve, BASELINE_MS));

const attackStart = performance.now() - t0;
const body = readFileSync(posterPath(rows[10]!.id)).toString('latin1');
const part = '--b\r\nContent-Disposition: form-data; name="image"; filename="poster.jpg"\r\nContent-Type: image/jpeg\r\n\r\n';
const slow = await Promise.all(
  Array.from({ length: clients }, (_, i) =>
    i % 2 === 0
      ? slowConnection('headers', `GET /health HTTP/1.1\r\nHost: ${host}\r\n`, 'X-Slow: trickle\r\n')
      : slowConnection(
          'body',
          `POST /posters/similar?k=8 HTTP/1.1\r\nHost: ${host}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: ${part.length + body.length + 8}\r\n\r\n${part}`,
          body,
        ),
  ),
);
const attackEnd = performance.now() - t0;
await new Promise((resolve) => setTimeout(resolve, 5000));
running = false;
await Promise.all(ordinary);
clearInterval(sampler);
const timeouts = /^marquee_http_request_timeouts_total (\d+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1];
await server.stop();

const s = (v: number) => (v / 1000).toFixed(1);
const ms = (v: number) => v.toFixed(1);
const phase = (from: number, to: number) => {
  const inPhase = samples.filter((x) => x.at >= from && x.at < to);
  const latency = summarise(inPhase.map((x) => x.ms));
  return { count: inPhase.length, failed: inPhase.filter((x) => !x.ok).length, latency };
};
const alone = phase(0, attackStart);
const beside = phase(attackStart, attackEnd);
const tail = phase(attackEnd, Infinity);
const slowRow = (kind: SlowResult['kind'], timeoutMs: number) => {
  const mine = slow.filter((r) => r.kind === kind);
  const cut = summarise(mine.map((r) => r.closedAfterMs));
  const statuses = Object.entries(mine.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }), {}))
    .map(([status, n]) => `${n}× ${status}`)
    .join(', ');
  return `| ${kind === 'headers' ? 'headers, a byte a second' : 'multipart body, a byte a second (headers complete)'} | ${mine.length} | ${s(timeoutMs)} s | ${s(cut.min)} / ${s(cut.median)} / ${s(cut.p99)} / ${s(cut.max)} s | ${statuses} | ${Math.max(...mine.map((r) => r.bytesSent))} |`;
};
const baseline = usage.filter((u) => u.at < attackStart);
const during = usage.filter((u) => u.at >= attackStart && u.at < attackEnd);
const after = usage.filter((u) => u.at >= attackEnd);
const peak = (list: typeof usage, key: 'rssMiB' | 'fds') => Math.max(...list.map((u) => u[key]));
const lines = [
  '# Slow clients',
  '',
  `${new Date().toISOString()}, ${cpus()[0]?.model ?? 'cpu'} (${cpus().length} cores), Node ${process.version}, load average ${loadAtStart.toFixed(1)} at the start (other work shared the machine); \`nice node --import tsx bench/slow-clients.ts ${clients}\`.`,
  `A real server (test model 64x96, ${rows.length} posters) with the default timeouts: headers within ${s(HEADERS_TIMEOUT_MS)} s, headers and body within ${s(REQUEST_TIMEOUT_MS)} s. Ordinary traffic: 4 clients uploading posters to /posters/similar without pause and one polling /health every 100 ms, ${s(BASELINE_MS)} s alone, then beside ${clients} connections opened at once that each send one byte a second.`,
  '',
  '| Slow connections | n | Timeout | Cut off after (min / median / p99 / max) | Answered | Most bytes sent |',
  '| --- | --- | --- | --- | --- | --- |',
  slowRow('headers', HEADERS_TIMEOUT_MS),
  slowRow('body', REQUEST_TIMEOUT_MS),
  '',
  `\`marquee_http_request_timeouts_total\` afterwards: **${timeouts}** (of ${clients}).`,
  '',
  '| Ordinary traffic | Requests | Failed | p50 | p99 | max |',
  '| --- | --- | --- | --- | --- | --- |',
  `| Alone (${s(attackStart)} s) | ${alone.count} | ${alone.failed} | ${ms(alone.latency.median)} ms | ${ms(alone.latency.p99)} ms | ${ms(alone.latency.max)} ms |`,
  `| Beside the slow connections (${s(attackEnd - attackStart)} s, until the last was cut off) | ${beside.count} | **${beside.failed}** | ${ms(beside.latency.median)} ms | **${ms(beside.latency.p99)} ms** | ${ms(beside.latency.max)} ms |`,
  `| After (5 s) | ${tail.count} | ${tail.failed} | ${ms(tail.latency.median)} ms | ${ms(tail.latency.p99)} ms | ${ms(tail.latency.max)} ms |`,
  '',
  `Server: RSS ${peak(baseline, 'rssMiB').toFixed(0)} MiB alone, peak ${peak(during, 'rssMiB').toFixed(0)} MiB beside them, ${after.length ? after[after.length - 1]!.rssMiB.toFixed(0) : '?'} MiB after; open file descriptors ${peak(baseline, 'fds')} alone, peak ${peak(during, 'fds')}, ${after.length ? after[after.length - 1]!.fds : '?'} after.`,
  '',
  ...(failures.length ? ['Failed ordinary requests, in any phase (first 20):', '', ...failures.slice(0, 20).map((f) => `- ${f}`), ''] : []),
];
process.stdout.write(`${lines.join('\n')}\n`);
