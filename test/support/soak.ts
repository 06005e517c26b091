import { readdirSync, readFileSync } from 'node:fs';
import { rssOf } from './fuzz.js';
import { posterPath, type Row } from './catalog.js';
import { adminRequest, upload, type RunningServer } from './server.js';

/**
 * The soak: `concurrency` clients sending mixed traffic to a real server for a while (similar and
 * genre uploads, catalog pages, poster images, metrics, readiness) while scheduled admin actions
 * (a retrain, a rollback) run; per interval: answers, errors (503 overload apart), p50/p99, and
 * the server's RSS and open file descriptors.
 */

export interface SoakInterval {
  /** Seconds since the start when the interval ended. */
  at: number;
  requests: number;
  errors: number;
  overload: number;
  p50: number;
  p99: number;
  rssMiB: number;
  fds: number;
  events: string[];
}

export interface SoakAction {
  atSeconds: number;
  name: string;
  run: () => Promise<string>;
}

export interface SoakResult {
  intervals: SoakInterval[];
  errors: string[];
  requests: number;
}

type Kind = 'similar' | 'genre' | 'browse' | 'image' | 'metrics' | 'ready';
/** The traffic mix, by weight. */
const MIX: [Kind, number][] = [
  ['similar', 40],
  ['genre', 25],
  ['browse', 15],
  ['image', 10],
  ['metrics', 5],
  ['ready', 5],
];

function pick(rand: number): Kind {
  let left = rand * MIX.reduce((sum, [, w]) => sum + w, 0);
  for (const [kind, weight] of MIX) if ((left -= weight) < 0) return kind;
  return 'similar';
}

/** Open file descriptors of a process, from /proc (Linux). Throws where they cannot be counted: a count of 0 would pass any check. */
export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch (error) {
    throw new Error(`cannot count the open file descriptors of process ${pid}: ${(error as Error).message}`);
  }
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

export async function runSoak(
  server: RunningServer,
  options: { seconds: number; concurrency: number; intervalSeconds: number; queries: Row[]; catalogIds: string[]; actions?: SoakAction[]; onInterval?: (i: SoakInterval) => void },
): Promise<SoakResult> {
  const images = options.queries.map((r) => readFileSync(posterPath(r.id)));
  const pid = server.child.pid!;
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const errors: string[] = [];
  let window = { requests: 0, errors: 0, overload: 0, latencies: [] as number[], events: [] as string[] };
  const intervals: SoakInterval[] = [];
  let total = 0;
  let seq = 0;

  const once = async (kind: Kind) => {
    const i = seq++;
    const t0 = performance.now();
    let status: number;
    let body: unknown = null;
    let expected = true;
    try {
      if (kind === 'similar' || kind === 'genre') {
        const answer = await upload(`${server.url}/posters/${kind}?k=5`, images[i % images.length]!);
        status = answer.status;
        body = answer.body;
        expected = status !== 200 || (kind === 'similar' ? Array.isArray((body as any).results) : Array.isArray((body as any).scores));
      } else {
        const path = {
          browse: `/posters?limit=20&genre=${['Drama', 'Comedy', 'Action', 'Horror'][i % 4]}`,
          image: `/posters/${options.catalogIds[i % options.catalogIds.length]}/image`,
          metrics: '/metrics',
          ready: '/ready',
        }[kind];
        const response = await fetch(`${server.url}${path}`);
        status = response.status;
        const bytes = Buffer.from(await response.arrayBuffer());
        if (status >= 400) body = JSON.parse(bytes.toString('utf8'));
        expected = status !== 200 || bytes.length > 0;
      }
    } catch (error) {
      status = 0;
      body = (error as Error).message;
    }
    const ms = performance.now() - t0;
    total += 1;
    window.requests += 1;
    window.latencies.push(ms);
    // Overload is the 503 that says so (and asks to retry); any other 503 (not ready, a swap refusing queries) is an error.
    if (status === 503 && (body as { error?: { code?: string } } | null)?.error?.code === 'overloaded') window.overload += 1;
    else if (status !== 200 || !expected) {
      window.errors += 1;
      if (errors.length < 50) errors.push(`${kind} -> ${status}: ${JSON.stringify(body).slice(0, 200)}`);
    }
  };

  const client = async (n: number) => {
    let state = n * 7919;
    while (performance.now() < deadline) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      await once(pick(state / 2 ** 31));
    }
  };

  const sampler = (async () => {
    let next = started + options.intervalSeconds * 1000;
    while (next <= deadline + 1) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
      const sorted = window.latencies.sort((a, b) => a - b);
      const interval: SoakInterval = {
        at: Math.round((performance.now() - started) / 1000),
        requests: window.requests,
        errors: window.errors,
        overload: window.overload,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        rssMiB: (await rssOf(pid)) / 2 ** 20,
        fds: openFds(pid),
        events: window.events,
      };
      intervals.push(interval);
      options.onInterval?.(interval);
      window = { requests: 0, errors: 0, overload: 0, latencies: [], events: [] };
      next += options.intervalSeconds * 1000;
    }
  })();

  const actions = (async () => {
    for (const action of [...(options.actions ?? [])].sort((a, b) => a.atSeconds - b.atSeconds)) {
      const wait = started + action.atSeconds * 1000 - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      try {
        const outcome = await action.run();
        window.events.push(`${action.name}: ${outcome}`);
      } catch (error) {
        window.events.push(`${action.name} FAILED: ${(error as Error).message}`);
        errors.push(`${action.name}: ${(error as Error).message}`);
      }
    }
  })();

  await Promise.all([...Array.from({ length: options.concurrency }, (_, n) => client(n)), actions]);
  await sampler;
  return { intervals, errors, requests: total };
}


/** A forced retrain through the API, waited for; says how it ended. */
export async function retrainAction(server: RunningServer, token: string): Promise<string> {
  const started = await adminRequest(server.url, token, 'POST', '/admin/retrain', { mode: 'head', epochs: 1, force: true });
  if (started.status !== 202) throw new Error(`retrain answered ${started.status}: ${JSON.stringify(started.body)}`);
  for (;;) {
    const job = (await adminRequest(server.url, token, 'GET', `/admin/jobs/${started.body.id}`)).body;
    if (job.state === 'succeeded') return `${job.model_version} active`;
    if (['failed', 'cancelled', 'rejected'].includes(job.state)) throw new Error(`retrain ${job.state}: ${job.error}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Activates `version` (a rollback or forward); says which version serves. */
export async function activateAction(server: RunningServer, token: string, version: () => string): Promise<string> {
  const answer = await adminRequest(server.url, token, 'POST', `/admin/models/${version()}/activate`);
  if (answer.status !== 200) throw new Error(`activate answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return `${answer.body.version} active`;
}

export async function activeVersion(server: RunningServer, token: string): Promise<string> {
  return (await adminRequest(server.url, token, 'GET', '/admin/models')).body.active as string;
}
