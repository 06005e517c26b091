import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDatabase } from './backend.js';
import { ROOT } from './paths.js';

export interface RunningServer {
  url: string;
  dataDir: string;
  logs: () => string;
  stop: () => Promise<number | null>;
  child: ChildProcess;
}

/** Starts the real `marquee serve` on 127.0.0.1 (a free port) and waits until /ready answers 200. */
export async function startServer(env: Record<string, string>, options: { readyTimeoutMs?: number; waitReady?: boolean } = {}): Promise<RunningServer> {
  const dataDir = env.MARQUEE_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'marquee-data-'));
  env = withDatabase({ ...env, MARQUEE_DATA_DIR: dataDir });
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'marquee.js'), 'serve'], {
    cwd: ROOT,
    // Float32 unless a test asks for int8 (test/int8.test.ts): quantising at each start would cost every test seconds.
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MARQUEE_THREADS: '2', LOG_LEVEL: 'info', MARQUEE_PRECISION: 'fp32', ...env, MARQUEE_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Whatever happens in the test, the server does not outlive it.
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.removeListener('exit', kill));
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen in time:\n${output}`)), 30_000);
    const check = () => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening:\n${output}`)));
  });

  const server: RunningServer = {
    url,
    dataDir,
    logs: () => output,
    child,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
  };
  if (options.waitReady === false) return server;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 180_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}) before ready:\n${output}`);
    const response = await fetch(`${url}/ready`).catch(() => null);
    if (response?.status === 200) return server;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`server not ready in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export async function upload(
  url: string,
  bytes: Buffer | Uint8Array,
  options: { field?: string; filename?: string; type?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const form = new FormData();
  form.append(options.field ?? 'image', new Blob([new Uint8Array(bytes)], { type: options.type ?? 'image/jpeg' }), options.filename ?? 'poster.jpg');
  const response = await fetch(url, { method: 'POST', body: form, headers: options.headers });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: the assertion on body will show the text */
  }
  return { status: response.status, body, headers: response.headers };
}

/** A JSON request to an admin route with the bearer token; the body parsed when there is one. */
export async function adminRequest(url: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** Waits until the server's near-duplicate checks answer: the start hashes the posters without a hash once it is ready (503 until then). */
export async function nearDuplicatesReady(url: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const { posters } = (await (await fetch(`${url}/posters?limit=1`)).json()) as { posters: { id: string }[] };
  if (posters.length === 0) return;
  for (;;) {
    const response = await fetch(`${url}/posters/${encodeURIComponent(posters[0]!.id)}/near-duplicates`);
    await response.body?.cancel();
    if (response.status !== 503) return;
    if (Date.now() > deadline) throw new Error('near-duplicate checks not ready in time');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
