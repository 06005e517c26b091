/**
 * Marquee benchmarks: `npm run bench` (builds dist/, then runs this file with tsx).
 *
 *  (a) embedding throughput: the server's Embedder / MicroBatcher vs a bare onnxruntime session vs PyTorch eager
 *  (b) HTTP load with autocannon against the real server (POST /posters/similar?k=8)
 *  (c) k-NN search latency and recall at catalog size: usearch HNSW vs an exact scan
 *
 * Prints progress and a table, writes bench/results/latest.md and latest.json. See bench/README.md.
 * Environment: MARQUEE_DATA_DIR (default ./var), MARQUEE_CATALOG (default ../shared/posters),
 * BENCH_SECTIONS (default "embedding,search,http"), BENCH_HTTP_VARIANTS, BENCH_WAIT_QUIET, BENCH_QUICK=1.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createContext } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { renderMarkdown, type BenchResults, type Comparison } from './lib/report.js';
import { benchEmbedding } from './sections/embedding.js';
import { benchHttp, CONCURRENCY, type HttpVariant } from './sections/http.js';
import { benchSearch } from './sections/search.js';

/**
 * Extra server settings measured at c=1 and c=16, beside the defaults (MARQUEE_BATCH_MAX_SIZE=16,
 * MARQUEE_BATCH_MAX_WAIT_MS=2). BENCH_HTTP_VARIANTS overrides: "K=V,K=V;K=V" (";" between settings,
 * "" for none). On a 2-core CPU, waiting to fill batches buys no throughput (ORT's img/s hardly
 * grows with the batch) and costs its full wait at c=1; 0 and 25 ms bracket the default.
 */
const DEFAULT_VARIANTS = 'MARQUEE_BATCH_MAX_WAIT_MS=2;MARQUEE_BATCH_MAX_WAIT_MS=25;MARQUEE_ORT_SPINNING=0';

function parseVariants(spec: string): HttpVariant[] {
  return spec
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const env: Record<string, string> = {};
      for (const pair of s.split(',')) {
        const [key, value] = pair.split('=');
        if (!key || value === undefined) throw new Error(`BENCH_HTTP_VARIANTS: "${pair}" is not KEY=VALUE`);
        env[key.trim()] = value.trim();
      }
      return { setting: s, env, connections: [1, 16] };
    });
}

async function main(): Promise<void> {
  const started = Date.now();
  const machine = machineInfo();
  const log = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  log(`${machine.cpuModel} × ${machine.cores}, ${machine.totalMemoryGiB.toFixed(1)} GiB, Node ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}`);
  if (machine.otherServers.length) log(`WARNING: other marquee servers are running and will skew every figure: ${machine.otherServers.join('; ')}`);
  if (machine.loadAverageAtStart > 0.5 * machine.cores) log(`WARNING: load average ${machine.loadAverageAtStart.toFixed(2)}: the machine is busy`);

  const sections = new Set((process.env.BENCH_SECTIONS ?? 'embedding,search,http').split(',').map((s) => s.trim()));
  const ctx = await createContext();
  const results: BenchResults = {
    format: 'marquee-bench/1',
    machine,
    wallSeconds: 0,
    quick: ctx.quick,
    embedding: null,
    http: null,
    search: null,
    comparisons: [],
    interference: [],
    notes: [],
    errors: [],
  };
  const monitor = ctx.monitor;
  monitor.start();
  const waitQuiet = Number(process.env.BENCH_WAIT_QUIET ?? (ctx.quick ? 0 : 60));
  // Retries and waits for a quiet machine stop after this, so that a busy machine cannot stretch the run past ~10 minutes.
  monitor.deadlineMs = started + Number(process.env.BENCH_RETRY_DEADLINE_S ?? 420) * 1000;
  log(`data ${ctx.dataDir}, active model ${ctx.model.version}, ${ctx.testPosters.length} test-split posters`);

  const attempt = async (name: string, fn: () => Promise<void>) => {
    if (!sections.has(name)) return;
    const waited = await monitor.waitQuiet(waitQuiet);
    log(`== ${name}${waited > 4 ? ` (waited ${waited.toFixed(0)} s for other processes to go quiet)` : ''}`);
    const window = monitor.begin();
    try {
      await fn();
    } catch (error) {
      const message = `${name}: ${(error as Error).stack ?? String(error)}`;
      results.errors.push(message);
      log(`ERROR ${message}`);
    }
    const other = monitor.end(window, name);
    results.interference.push(other);
    if (other.shareOfMachine > 0.02) {
      const top = other.top.slice(0, 3).map((t) => `${t.command}[${t.pid}] ${t.cpuSeconds.toFixed(1)} s`).join(', ');
      log(`WARNING: other processes used ${other.otherCpuSeconds.toFixed(1)} CPU-s (${(100 * other.shareOfMachine).toFixed(1)}% of the machine) during ${name}: ${top}`);
    }
  };

  // In-process sections first, while nothing else runs; then the database is closed and the servers start.
  await attempt('embedding', async () => {
    results.embedding = await benchEmbedding(ctx, log);
  });
  await attempt('search', async () => {
    results.search = await benchSearch(ctx, log);
  });
  ctx.db.close();
  await attempt('http', async () => {
    const variants: HttpVariant[] = [{ setting: 'default', env: {}, connections: CONCURRENCY }, ...parseVariants(process.env.BENCH_HTTP_VARIANTS ?? DEFAULT_VARIANTS)];
    results.http = await benchHttp(ctx, variants, log);
  });

  monitor.stop();
  results.comparisons = compare(results);
  results.notes = notes(results);
  results.wallSeconds = (Date.now() - started) / 1000;

  const dir = join(ctx.root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const markdown = renderMarkdown(results);
  writeFileSync(join(dir, 'latest.md'), markdown);
  writeFileSync(join(dir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\n${markdown}`);
  log(`wrote ${join(dir, 'latest.md')} and latest.json`);
  if (results.errors.length) process.exitCode = 1;
}

function compare(r: BenchResults): Comparison[] {
  const out: Comparison[] = [];
  const row = (impl: string, batch: number) => r.embedding?.rows.find((x) => x.impl === impl && x.batch === batch);
  const http = (c: number) => r.http?.rows.find((x) => x.setting === 'default' && x.connections === c);
  const push = (name: string, definition: string, numerator: number | undefined, denominator: number | undefined, target: string, ok: (x: number) => boolean) => {
    if (numerator === undefined || denominator === undefined) return;
    const ratio = numerator / denominator;
    out.push({ name, definition, numerator, denominator, ratio, target, meetsTarget: Number.isFinite(ratio) ? ok(ratio) : null });
  };
  for (const batch of [1, 8, 16]) {
    push(
      `server/bare ORT, batch ${batch}`,
      'Embedder.embed ms/batch ÷ bare InferenceSession.run ms/batch',
      row('embedder', batch)?.medianMs,
      row('bare-ort', batch)?.medianMs,
      'informative (≈ 1)',
      () => true,
    );
  }
  push('PyTorch eager/bare ORT, batch 16', 'torch forward ms/batch ÷ bare ORT ms/batch', row('torch-eager', 16)?.medianMs, row('bare-ort', 16)?.medianMs, 'informative', () => true);
  // The unavoidable work per request: one poster's preprocessing plus its share of a forward pass
  // (at c=1, the preprocessing of the very poster the HTTP section uploads).
  const preprocessMs = r.embedding?.preprocess.total.median;
  const request = r.embedding?.request;
  const b1 = row('bare-ort', 1);
  const b16 = row('bare-ort', 16);
  const floorMs = b1 && request ? b1.medianMs + request.preprocess.median : undefined;
  const boundReqPerS = b16 && preprocessMs !== undefined ? 1000 / (b16.medianMs / 16 + preprocessMs) : undefined;
  push('HTTP p50 at c=1 / (forward at batch 1 + preprocessing)', 'p50 latency at c=1 ÷ (bare ORT ms at batch 1 + preprocessing ms of the uploaded poster, each timed alone)', http(1)?.p50Ms, floorMs, '≤ 1.2', (x) => x <= 1.2);
  push(
    'the same two steps in turn, no server / (forward at batch 1 + preprocessing)',
    'preprocess then bare ORT batch 1, one after the other, ms ÷ the same floor: what alternating the two costs by itself',
    request?.inTurnBare.median,
    floorMs,
    'informative (the least a request costs)',
    () => true,
  );
  push(
    'the two steps in turn + a bare HTTP round trip / (forward at batch 1 + preprocessing)',
    '(preprocess then bare ORT, in turn) + p50 of the same upload at c=1 to a node:http server that only reads it, ÷ the same floor: a lower bound for any server',
    request && r.http?.bareRoundTrip ? request.inTurnBare.median + r.http.bareRoundTrip.p50Ms : undefined,
    floorMs,
    'informative (> 1.2: the target is out of reach)',
    () => true,
  );
  push(
    'HTTP p50 at c=1 / the two steps in turn through the Embedder',
    "p50 latency at c=1 ÷ (preprocess then Embedder.embed, one after the other): what HTTP, multipart, the search and the answer add",
    http(1)?.p50Ms,
    request?.inTurnEmbedder.median,
    'informative',
    () => true,
  );
  push('HTTP req/s at c=16 / bound', 'req/s at c=16 ÷ 1000 / (bare ORT ms per image at batch 16 + preprocessing ms per poster)', http(16)?.reqPerS, boundReqPerS, '≥ 0.9', (x) => x >= 0.9);
  const best = r.http?.rows.filter((x) => x.connections === 16).sort((a, b) => b.reqPerS - a.reqPerS)[0];
  if (best && best.setting !== 'default') {
    push(`HTTP req/s at c=16 (${best.setting}) / bound`, 'best extra setting', best.reqPerS, boundReqPerS, '≥ 0.9', (x) => x >= 0.9);
  }
  push('HTTP p50 at c=1 / forward at batch 1', 'p50 latency (ms) at c=1 ÷ bare ORT ms/batch at batch 1 (plain)', http(1)?.p50Ms, b1?.medianMs, 'informative', () => true);
  push('HTTP req/s at c=16 / bare ORT img/s at batch 16', 'req/s at c=16 ÷ bare ORT img/s at batch 16 (plain)', http(16)?.reqPerS, b16?.imgPerS, 'informative', () => true);
  const exact = r.search?.rows.find((x) => x.method === 'exact-scan');
  const hnsw = r.search?.rows.find((x) => x.method === 'hnsw');
  push('search p50 HNSW / exact scan', 'VectorIndex.search p50 ÷ brute-force p50 (k=8)', hnsw?.latency.median, exact?.latency.median, 'informative (< 1)', (x) => x < 1);
  if (r.search) out.push({ name: 'recall@8 HNSW vs exact', definition: 'mean |HNSW ∩ exact| / 8', numerator: r.search.recallAtK, denominator: 1, ratio: r.search.recallAtK, target: 'informative', meetsTarget: null });
  return out;
}

/** Plain-language observations derived from the figures (nothing here fails the run). */
function notes(r: BenchResults): string[] {
  const out: string[] = [];
  const e = r.embedding;
  if (e) {
    const b1 = e.rows.find((x) => x.impl === 'bare-ort' && x.batch === 1);
    const b16 = e.rows.find((x) => x.impl === 'bare-ort' && x.batch === 16);
    if (b1 && b16) out.push(`Bare ORT: batching 16 images gives ${(b16.imgPerS / b1.imgPerS).toFixed(2)}× the throughput of batch 1 on this machine.`);
    const p = e.preprocess.total.median;
    if (b1) out.push(`Preprocessing one poster costs ${p.toFixed(1)} ms, ${((100 * p) / b1.medianMs).toFixed(0)}% of a batch-1 forward pass.`);
  }
  if (e && e.eventLoop.longestGapMs > 0.8 * e.eventLoop.forwardMs) {
    out.push(
      `Embedder.embed (onnxruntime-node InferenceSession.run) holds the JS event loop for the whole forward pass (${e.eventLoop.forwardMs.toFixed(0)} ms at batch ${e.eventLoop.batch}; ` +
        `the 1 ms timer fired ${e.eventLoop.timerFirings}×): while a batch runs the server neither parses uploads nor finishes preprocessing, so the next batch only holds what got through in the gap.`,
    );
  }
  const h16 = r.http?.rows.find((x) => x.setting === 'default' && x.connections === 16);
  if (h16) out.push(`At c=16 the server formed batches of ${h16.meanBatchSize.toFixed(2)} images on average (marquee_embedding_batch_size_sum / _count over the measured run), ${h16.meanBatchForwardMs.toFixed(0)} ms forward per batch.`);
  for (const c of [1, 16]) {
    const rows = r.http?.rows.filter((x) => x.connections === c) ?? [];
    if (rows.length > 1) {
      out.push(`c=${c} by setting: ` + rows.map((x) => `${x.setting} ${x.reqPerS.toFixed(1)} req/s, p50 ${x.p50Ms.toFixed(1)} ms`).join('; ') + '.');
    }
  }
  return out;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
