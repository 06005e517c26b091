import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export interface BenchServer {
  url: string;
  port: number;
  pid: number;
  /** Seconds from spawn to /ready answering 200. */
  readySeconds: number;
  logs(): string;
  stop(): Promise<void>;
}

/** A TCP port that was free a moment ago (the server is told it explicitly, since LOG_LEVEL=warn hides the listen line). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts `node bin/marquee.js serve` (the built dist/) on a free port and waits until /ready says ready.
 * BENCH_SERVER_NODE_ARGS passes Node options to the server (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`,
 * which NODE_OPTIONS refuses).
 */
export async function startServer(root: string, env: Record<string, string>, readyTimeoutMs = 180_000, logFile?: string): Promise<BenchServer> {
  const port = await freePort();
  const started = Date.now();
  const nodeArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, join(root, 'bin', 'marquee.js'), 'serve'], {
    cwd: root,
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  let output = '';
  // The last 20,000 characters in memory; every line in logFile, when given (a start's early lines scroll out of the tail).
  const whole = logFile ? createWriteStream(logFile) : null;
  const keep = (chunk: string) => {
    output = (output + chunk).slice(-20_000);
    whole?.write(chunk);
  };
  child.stdout!.setEncoding('utf8').on('data', keep);
  child.stderr!.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      process.removeListener('exit', kill);
      if (whole) whole.end(resolve);
      else resolve();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const server: BenchServer = {
    url,
    port,
    pid: child.pid!,
    readySeconds: 0,
    logs: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}) before ready:\n${output}`);
    const response = await fetch(`${url}/ready`).catch(() => null);
    if (response?.status === 200) break;
    await response?.body?.cancel();
    if (Date.now() - started > readyTimeoutMs) {
      await server.stop();
      throw new Error(`server not ready within ${readyTimeoutMs} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  server.readySeconds = (Date.now() - started) / 1000;
  return server;
}

/** Sums of the Prometheus series we read from /metrics (un-labelled series only, which is all we need). */
export type MetricSnapshot = Map<string, number>;

export async function scrapeMetrics(url: string): Promise<MetricSnapshot> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: MetricSnapshot = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const name = match[1]! + (match[2] ?? '');
    out.set(name, Number(match[3]));
  }
  return out;
}

/** Mean observation and count of a histogram between two snapshots. */
export function histogramDelta(before: MetricSnapshot, after: MetricSnapshot, name: string): { count: number; mean: number } {
  const count = (after.get(`${name}_count`) ?? 0) - (before.get(`${name}_count`) ?? 0);
  const sum = (after.get(`${name}_sum`) ?? 0) - (before.get(`${name}_sum`) ?? 0);
  return { count, mean: count > 0 ? sum / count : Number.NaN };
}
