import type { EmbeddingResult } from '../sections/embedding.js';
import type { HttpResult } from '../sections/http.js';
import type { SearchResult } from '../sections/search.js';
import type { Interference } from './interference.js';
import type { MachineInfo } from './machine.js';

export interface Comparison {
  name: string;
  /** What is divided by what. */
  definition: string;
  numerator: number;
  denominator: number;
  ratio: number;
  target: string;
  /** Whether the ratio is on the target's side; informative only (this is a benchmark, nothing fails). */
  meetsTarget: boolean | null;
}

export interface BenchResults {
  format: 'marquee-bench/1';
  machine: MachineInfo;
  wallSeconds: number;
  quick: boolean;
  embedding: EmbeddingResult | null;
  http: HttpResult | null;
  search: SearchResult | null;
  comparisons: Comparison[];
  /** CPU used by processes outside the benchmark during each section (should be ≈ 0). */
  interference: Interference[];
  notes: string[];
  errors: string[];
}

const f = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined || Number.isNaN(x) ? '–' : x.toFixed(digits));

/** Share of the machine other processes used while a figure was measured, flagged when it skews the figure. */
function disturbed(share: number, attempts: number): string {
  const pct = `${(100 * share).toFixed(1)}%`;
  const tries = attempts > 1 ? ` (${attempts} tries)` : '';
  return share > 0.05 ? `**${pct}**${tries} ⚠` : `${pct}${tries}`;
}

function table(header: string[], rows: string[][]): string {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine;
  const out: string[] = [];
  out.push('# Marquee benchmark results', '');
  if (r.quick) out.push('> **BENCH_QUICK=1 run: repetitions cut to a minimum; these figures only show that the benchmark runs.**', '');
  out.push(
    table(
      ['machine', ''],
      [
        ['date', m.date],
        ['CPU', `${m.cpuModel} × ${m.cores} cores`],
        ['memory', `${f(m.totalMemoryGiB)} GiB`],
        ['OS', m.os],
        ['Node', m.node],
        ['onnxruntime-node', m.onnxruntimeNode],
        ['sharp / usearch / autocannon', `${m.sharp} / ${m.usearch} / ${m.autocannon}`],
        ['PyTorch', r.embedding?.torch ? `${r.embedding.torch.version} (${r.embedding.torch.threads} threads)` : '–'],
        ['load average at start (1 min)', f(m.loadAverageAtStart, 2)],
        ['whole run', `${f(r.wallSeconds, 0)} s`],
      ],
    ),
    '',
  );
  if (m.otherServers.length) out.push(`> **Warning:** other servers were running during this run: ${m.otherServers.join('; ')}`, '');

  out.push('## Targets', '');
  out.push(
    table(
      ['comparison', 'definition', 'value', 'target', 'on target'],
      r.comparisons.map((c) => [c.name, c.definition, `${f(c.numerator, 2)} / ${f(c.denominator, 2)} = **${f(c.ratio, 2)}**`, c.target, c.meetsTarget === null ? '–' : c.meetsTarget ? 'yes' : 'no']),
    ),
    '',
  );

  const e = r.embedding;
  if (e) {
    out.push(`## (a) Embedding throughput — ${e.modelVersion}, ${e.input.width}x${e.input.height} → ${e.input.dims}-d, ${e.threads} intra-op threads, provider ${e.provider}`, '');
    out.push(
      table(
        ['implementation', 'batch', 'ms/batch median', 'p10–p90', 'img/s', 'ms ratio vs bare ORT', 'reps', 'other CPU'],
        e.rows.map((row) => [
          row.impl,
          String(row.batch),
          f(row.medianMs),
          `${f(row.p10Ms)}–${f(row.p90Ms)}`,
          f(row.imgPerS, 2),
          f(row.msRatioVsBare, 3),
          String(row.reps),
          disturbed(row.otherCpuShare, row.attempts),
        ]),
      ),
      '',
    );
    const p = e.preprocess;
    out.push(
      `Preprocessing (project's \`preprocess\`: decode + resize + normalise), ${p.posters} test-split posters, one at a time: ` +
        `median **${f(p.total.median, 2)} ms/poster** (p90 ${f(p.total.p90, 2)} ms; decode ${f(p.decodeMedianMs, 2)}, resize ${f(p.resizeMedianMs, 2)}, normalise ${f(p.normaliseMedianMs, 2)} ms); ` +
        `${f(p.concurrent16PerS, 0)} posters/s with 16 in flight (other CPU ${disturbed(p.otherCpuShare, p.attempts)}).`,
      '',
    );
    const q = e.request;
    const bare1 = e.rows.find((row) => row.impl === 'bare-ort' && row.batch === 1);
    if (q && bare1) {
      out.push(
        `One request's work at c=1, for the poster the HTTP section uploads (${q.posterId}), medians: preprocessing alone **${f(q.preprocess.median, 2)} ms**, ` +
          `a batch-1 forward alone ${f(bare1.medianMs, 2)} ms (sum ${f(q.preprocess.median + bare1.medianMs, 2)} ms); the two in turn, as a request does them: ` +
          `**${f(q.inTurnBare.median, 2)} ms** with bare ORT, **${f(q.inTurnEmbedder.median, 2)} ms** through the Embedder's worker. ` +
          'Each step alone runs with warm caches; in turn, each starts with the caches full of the other\'s data.',
        '',
      );
    }
    out.push(
      `MicroBatcher: maxBatchSize ${e.batcher.maxBatchSize}, maxWaitMs ${e.batcher.maxWaitMs}; batch sizes it formed: ` +
        Object.entries(e.batcher.observedBatchSizes)
          .map(([size, n]) => `${size}×${n}`)
          .join(', ') +
        '.',
      '',
    );
    out.push(
      `Parity: Embedder vs bare ORT max |Δ| ${e.parity.embedderVsBareMaxAbs.toExponential(2)}; PyTorch vs ORT max |Δ| ${e.parity.torchVsOrtMaxAbs === null ? '–' : e.parity.torchVsOrtMaxAbs.toExponential(2)} (unit-length 512-d embeddings).`,
      '',
    );
    out.push(
      `Event loop during one batch-${e.eventLoop.batch} \`Embedder.embed\` (${f(e.eventLoop.forwardMs, 0)} ms): a 1 ms timer fired ${e.eventLoop.timerFirings}×, longest gap ${f(e.eventLoop.longestGapMs, 0)} ms` +
        (e.eventLoop.longestGapMs > 0.8 * e.eventLoop.forwardMs ? ' — **the forward pass blocks the JS event loop**.' : '.'),
      '',
    );
    if (e.torchError) out.push(`PyTorch baseline unavailable: ${e.torchError}`, '');
  }

  const h = r.http;
  if (h) {
    out.push(`## (b) HTTP load — ${h.endpoint}`, '');
    out.push(`Poster ${h.poster.id} (${h.poster.width}x${h.poster.height}, ${h.poster.bytes} bytes); autocannon in a process of its own (bench/lib/load-process.ts), server in another, on the same ${m.cores} cores; latencies from autocannon's per-response times in fractional ms (its histogram keeps whole ms).`, '');
    out.push(
      table(
        ['setting', 'connections', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'mean batch size', 'forward ms/batch (server)', 'requests', 'non-2xx / errors', 'autocannon CPU (cores)', 'other CPU'],
        h.rows.map((row) => [
          row.setting,
          String(row.connections),
          f(row.reqPerS, 2),
          f(row.p50Ms, 1),
          f(row.p90Ms, 1),
          f(row.p99Ms, 1),
          f(row.meanBatchSize, 2),
          f(row.meanBatchForwardMs, 1),
          String(row.requests),
          `${row.non2xx} / ${row.errors}`,
          f(row.loadGeneratorCores, 2),
          disturbed(row.otherCpuShare, row.attempts),
        ]),
      ),
      '',
    );
    out.push(
      '"other CPU": CPU used by processes outside the benchmark while the row was measured, as a share of the machine; rows above 5% are measured again (up to 3 tries, the least disturbed kept) and flagged ⚠ if still disturbed.',
      '',
    );
    if (h.bareRoundTrip) {
      out.push(
        `A bare HTTP round trip, the same upload at c=1 to a node:http server in the bench process that reads it and answers \`{}\`: p50 **${f(h.bareRoundTrip.p50Ms, 2)} ms**, p99 ${f(h.bareRoundTrip.p99Ms, 2)} ms (${h.bareRoundTrip.requests} requests).`,
        '',
      );
    }
    if (h.timing.length) {
      out.push(
        'Where a request\'s time goes at c=1 (300 sequential requests from this process, medians in ms: the server\'s Server-Timing parts, and the whole request as the client saw it; the rest is HTTP, multipart framing and JSON):',
        '',
        table(
          ['setting', 'read', 'preprocess', 'embed (batch wait + forward)', 'search', 'client total'],
          h.timing.map((t) => [t.setting, f(t.parts.read ?? NaN, 2), f(t.parts.preprocess ?? NaN, 2), f(t.parts.embed ?? NaN, 2), f(t.parts.search ?? NaN, 2), f(t.clientMs, 2)]),
        ),
        '',
      );
    }
    out.push(`Server start-up to ready: ${h.servers.map((s) => `${s.setting} ${f(s.readySeconds)} s`).join(', ')}.`, '');
  }

  const s = r.search;
  if (s) {
    out.push(`## (c) Search at catalog size — k=${s.k}, ${s.vectors} vectors × ${s.dims} dims, ${s.queries} test-split queries × ${s.passes} passes`, '');
    out.push(
      table(
        ['method', 'p50 ms', 'p99 ms', 'mean ms', 'queries/s', 'p50 ratio vs exact', 'other CPU'],
        s.rows.map((row) => [
          `${row.method}: ${row.description}`,
          f(row.latency.median, 3),
          f(row.latency.p99, 3),
          f(row.latency.mean, 3),
          f(row.queriesPerS, 0),
          f(row.p50RatioVsExact, 3),
          disturbed(row.otherCpuShare, row.attempts),
        ]),
      ),
      '',
    );
    out.push(
      `Recall@${s.k} of HNSW vs exact: **${f(s.recallAtK, 4)}** by poster key (${f(s.recallAtKDistance, 4)} counting distance ties); ` +
        `the query's own poster came first in ${s.selfFirst}/${s.queries}. Index ${s.indexFile}${s.indexRebuilt ? ' (was rebuilt: stale or missing)' : ''}.`,
      '',
    );
  }

  if (r.interference.length) {
    out.push('## Other processes on the machine during the run', '');
    out.push(
      table(
        ['section', 'wall s', 'CPU-s used by other processes', 'share of machine', 'top'],
        r.interference.map((i) => [
          i.section,
          f(i.wallSeconds, 0),
          f(i.otherCpuSeconds, 1),
          `${f(100 * i.shareOfMachine, 1)}%`,
          i.top.slice(0, 3).map((t) => `${t.command}[${t.pid}] ${f(t.cpuSeconds, 1)} s`).join(', ') || '–',
        ]),
      ),
      '',
    );
    if (r.interference.some((i) => i.shareOfMachine > 0.02)) out.push('> **Warning:** other processes used more than 2% of the machine during a section: its figures are skewed.', '');
  }
  if (r.notes.length) out.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  if (r.errors.length) out.push('## Errors', '', ...r.errors.map((n) => `- ${n}`), '');
  return out.join('\n');
}
