import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type autocannon from 'autocannon';
import { histogramDelta, scrapeMetrics, startServer, type BenchServer } from '../lib/server.js';
import { httpPoster, type BenchContext } from '../lib/context.js';

export const CONCURRENCY = [1, 4, 16] as const;

export interface HttpRow {
  /** Which server configuration: "default" or the batching env vars that differ. */
  setting: string;
  env: Record<string, string>;
  connections: number;
  seconds: number;
  requests: number;
  non2xx: number;
  errors: number;
  reqPerS: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  /** From /metrics over this run: mean images per embedding batch and mean forward time per batch. */
  meanBatchSize: number;
  batches: number;
  meanBatchForwardMs: number;
  otherCpuShare: number;
  /** CPU the load generator (autocannon, in its own process) took, in cores: its CPU seconds ÷ wall seconds. */
  loadGeneratorCores: number;
  attempts: number;
}

/** Where one request's time went at c=1: the server's Server-Timing parts and what the client saw, medians in ms. */
export interface TimingProbe {
  setting: string;
  requests: number;
  parts: Record<string, number>;
  clientMs: number;
}

export interface HttpResult {
  endpoint: string;
  timing: TimingProbe[];
  /** The same upload at c=1 against a bare node:http server that reads the body and answers `{}`: an HTTP round trip with nothing behind it. */
  bareRoundTrip: { p50Ms: number; p99Ms: number; requests: number } | null;
  poster: { id: string; file: string; bytes: number; width: number; height: number };
  servers: { setting: string; readySeconds: number }[];
  rows: HttpRow[];
}

export interface HttpVariant {
  setting: string;
  env: Record<string, string>;
  connections: readonly number[];
}

/** Section (b): autocannon against the real server, POST /posters/similar?k=8 with a real poster. */
export async function benchHttp(ctx: BenchContext, variants: HttpVariant[], progress: (line: string) => void): Promise<HttpResult> {
  // A real poster of typical size.
  const chosen = httpPoster(ctx);
  const path = '/posters/similar?k=8';
  const result: HttpResult = {
    endpoint: `POST ${path} (multipart field "image")`,
    poster: { id: chosen.poster.id, file: chosen.file, bytes: chosen.bytes, width: chosen.poster.width, height: chosen.poster.height },
    servers: [],
    rows: [],
    timing: [],
    bareRoundTrip: null,
  };
  const form = { image: { type: 'file', path: chosen.file, options: { filename: `${chosen.poster.id}.jpg`, contentType: 'image/jpeg' } } };
  result.bareRoundTrip = await bareRoundTrip(ctx, form, path);
  progress(`bare HTTP round trip at c=1: p50 ${result.bareRoundTrip.p50Ms.toFixed(2)} ms`);

  for (const variant of variants) {
    const server = await startServer(ctx.root, {
      MARQUEE_DATA_DIR: ctx.dataDir,
      MARQUEE_CATALOG: ctx.catalogDir,
      MARQUEE_THREADS: String(ctx.config.threads),
      LOG_LEVEL: 'warn',
      ...variant.env,
    });
    result.servers.push({ setting: variant.setting, readySeconds: server.readySeconds });
    progress(`server (${variant.setting}) ready in ${server.readySeconds.toFixed(1)} s at ${server.url}`);
    try {
      await checkResponse(server, chosen.file, path);
      result.timing.push({ setting: variant.setting, ...(await probeTiming(server, chosen.file, path, 300)) });
      for (const connections of variant.connections) {
        const run = (duration: number) => loadProcess(ctx.root, { url: `${server.url}${path}`, method: 'POST', connections, duration, form, timeout: 60 });
        const label = `c=${connections} (${variant.setting})`;
        const measured = await ctx.monitor.clean(
          label,
          async () => {
            await run(ctx.httpWarmupSeconds);
            const before = await scrapeMetrics(server.url);
            const r = await run(ctx.httpSeconds);
            const after = await scrapeMetrics(server.url);
            return { r, before, after };
          },
          {},
          (i) => progress(`${label}: other processes used ${(100 * i.shareOfMachine).toFixed(0)}% of the machine; measuring again`),
        );
        const { r: run_, before, after } = measured.value;
        const r = run_.result;
        const size = histogramDelta(before, after, 'marquee_embedding_batch_size');
        const forward = histogramDelta(before, after, 'marquee_embedding_batch_duration_seconds');
        const row: HttpRow = {
          setting: variant.setting,
          env: variant.env,
          connections,
          seconds: r.duration,
          requests: r['2xx'],
          non2xx: r.non2xx,
          errors: r.errors,
          reqPerS: r['2xx'] / r.duration,
          p50Ms: run_.latencyMs.p50,
          p90Ms: run_.latencyMs.p90,
          p99Ms: run_.latencyMs.p99,
          meanMs: run_.latencyMs.mean,
          meanBatchSize: size.mean,
          batches: size.count,
          meanBatchForwardMs: forward.mean * 1000,
          otherCpuShare: measured.interference.shareOfMachine,
          loadGeneratorCores: run_.cpuSeconds / run_.wallSeconds,
          attempts: measured.attempts,
        };
        result.rows.push(row);
        progress(
          `c=${String(connections).padStart(2)} (${variant.setting}): ${row.reqPerS.toFixed(2)} req/s, p50 ${row.p50Ms.toFixed(2)} ms, p99 ${row.p99Ms.toFixed(2)} ms, ` +
            `mean batch ${row.meanBatchSize.toFixed(2)}${row.non2xx || row.errors ? `, ${row.non2xx} non-2xx, ${row.errors} errors` : ''}`,
        );
      }
    } finally {
      await server.stop();
    }
  }
  return result;
}

const execFileAsync = promisify(execFile);

/** autocannon at c=1 against a node:http server in this process that reads the upload and answers `{}`. */
async function bareRoundTrip(ctx: BenchContext, form: Record<string, unknown>, path: string): Promise<NonNullable<HttpResult['bareRoundTrip']>> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const options = { url: `http://127.0.0.1:${port}${path}`, method: 'POST', connections: 1, form, timeout: 60 };
    await loadProcess(ctx.root, { ...options, duration: ctx.httpWarmupSeconds });
    const run = await loadProcess(ctx.root, { ...options, duration: Math.min(ctx.httpSeconds, 5) });
    return { p50Ms: run.latencyMs.p50, p99Ms: run.latencyMs.p99, requests: run.result['2xx'] };
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

interface LoadRun {
  result: autocannon.Result;
  /** The 2xx responses' latencies from autocannon's per-response times, in fractional ms. */
  latencyMs: { p50: number; p90: number; p99: number; mean: number };
  cpuSeconds: number;
  wallSeconds: number;
}

/** One autocannon run in its own process (bench/lib/load-process.ts). */
async function loadProcess(root: string, options: Record<string, unknown>): Promise<LoadRun> {
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', join(root, 'bench', 'lib', 'load-process.ts'), JSON.stringify(options)], {
    cwd: root,
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as LoadRun;
}

/** Sequential requests, each timed by the client and broken down by the server's Server-Timing header. */
async function probeTiming(server: BenchServer, file: string, path: string, requests: number): Promise<Omit<TimingProbe, 'setting'>> {
  const bytes = new Uint8Array(readFileSync(file));
  const parts = new Map<string, number[]>();
  const client: number[] = [];
  for (let i = 0; i < requests + 20; i++) {
    const body = new FormData();
    body.append('image', new Blob([bytes], { type: 'image/jpeg' }), 'poster.jpg');
    const started = performance.now();
    const response = await fetch(`${server.url}${path}`, { method: 'POST', body });
    await response.arrayBuffer();
    if (i < 20) continue; // warm-up
    client.push(performance.now() - started);
    for (const part of (response.headers.get('server-timing') ?? '').split(', ')) {
      const [name, dur] = part.split(';dur=');
      if (name && dur) parts.set(name, [...(parts.get(name) ?? []), Number(dur)]);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  return { requests, parts: Object.fromEntries([...parts].map(([name, xs]) => [name, median(xs)])), clientMs: median(client) };
}

async function checkResponse(server: BenchServer, file: string, path: string): Promise<void> {
  const body = new FormData();
  body.append('image', new Blob([new Uint8Array(readFileSync(file))], { type: 'image/jpeg' }), 'poster.jpg');
  const response = await fetch(`${server.url}${path}`, { method: 'POST', body });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`POST ${path} answered ${response.status}: ${text.slice(0, 500)}`);
  const json = JSON.parse(text) as { results?: unknown[] };
  if (!Array.isArray(json.results) || json.results.length !== 8) throw new Error(`POST ${path} did not return 8 results: ${text.slice(0, 500)}`);
}
