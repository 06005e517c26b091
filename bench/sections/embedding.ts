import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { MicroBatcher } from '../../src/model/batcher.js';
import { decodeRgb, normalise, preprocess, resizeRgb } from '../../src/model/preprocess.js';
import { loadEmbedder } from '../../src/service/engine.js';
import { httpPoster, posterBytes, type BenchContext } from '../lib/context.js';
import type { Interference } from '../lib/interference.js';
import { nowMs, ratio, repeat, summarise, type Summary } from '../lib/stats.js';

export const BATCHES = [1, 8, 16] as const;

export type Implementation = 'bare-ort' | 'embedder' | 'micro-batcher' | 'torch-eager';

export interface ForwardRow {
  impl: Implementation;
  batch: number;
  reps: number;
  medianMs: number;
  p10Ms: number;
  p90Ms: number;
  imgPerS: number;
  /** medianMs / bare ORT medianMs at the same batch size (≥ 1 means slower than bare ORT). */
  msRatioVsBare: number;
  /** CPU used by other processes while this row was measured, as a share of the machine (≈ 0 for a clean figure). */
  otherCpuShare: number;
  /** Measurements made (1 + retries after disturbance by other processes); the least disturbed is kept. */
  attempts: number;
  note?: string;
}

export interface PreprocessResult {
  posters: number;
  /** preprocess(): decode + resize + normalise, one poster at a time, ms per poster. */
  total: Summary;
  decodeMedianMs: number;
  resizeMedianMs: number;
  normaliseMedianMs: number;
  /** Posters per second with 16 preprocess() calls in flight (as under HTTP load at c=16). */
  concurrent16PerS: number;
  otherCpuShare: number;
  attempts: number;
}

export interface EmbeddingResult {
  modelVersion: string;
  modelFile: string;
  input: { width: number; height: number; dims: number };
  threads: number;
  provider: string;
  batcher: { maxBatchSize: number; maxWaitMs: number; observedBatchSizes: Record<string, number> };
  preprocess: PreprocessResult;
  /**
   * One request's work at c=1, for the HTTP section's poster, ms: its preprocessing alone, and
   * preprocessing then a batch-1 forward in turn (bare ORT; the server's Embedder on its worker).
   */
  request: { posterId: string; preprocess: Summary; inTurnBare: Summary; inTurnEmbedder: Summary };
  rows: ForwardRow[];
  parity: { embedderVsBareMaxAbs: number; torchVsOrtMaxAbs: number | null };
  /**
   * A 1 ms interval timer running during one Embedder.embed of the largest batch: how often it fired
   * and the longest gap between firings. ~0 firings and a gap ≈ the forward time mean the forward
   * pass runs on (and blocks) the JS event loop: no upload is parsed or preprocessed meanwhile.
   */
  eventLoop: { batch: number; forwardMs: number; timerFirings: number; longestGapMs: number };
  torch: { version: string; threads: number; checkpoint: string; loadSeconds: number } | null;
  torchError?: string;
}

/** Section (a): embedding throughput of the server's path vs bare onnxruntime vs PyTorch eager. */
export async function benchEmbedding(ctx: BenchContext, progress: (line: string) => void): Promise<EmbeddingResult> {
  const { model } = ctx;
  const spec = model.preprocessing;
  const maxBatch = Math.max(...BATCHES);
  const sample = ctx.testPosters.slice(0, ctx.quick ? 32 : 160).map((p) => posterBytes(ctx, p));

  const retry = (label: string) => (i: Interference) =>
    progress(`${label}: other processes used ${(100 * i.shareOfMachine).toFixed(0)}% of the machine (${i.top[0]?.command ?? '?'}…); measuring again`);
  // Preprocessing, on real posters, with the project's own functions.
  progress(`preprocess: ${sample.length} posters`);
  const preprocessRun = await ctx.monitor.clean('preprocess', () => benchPreprocess(sample, ctx), {}, retry('preprocess'));
  const preprocessResult = { ...preprocessRun.value, otherCpuShare: preprocessRun.interference.shareOfMachine, attempts: preprocessRun.attempts };
  const tensors = await Promise.all(sample.slice(0, maxBatch).map(async (bytes) => (await preprocess(bytes, spec, ctx.config.maxPixels)).tensor));
  const perImage = 3 * model.inputWidth * model.inputHeight;
  const batchOf = (n: number): Float32Array => {
    const out = new Float32Array(n * perImage);
    for (let i = 0; i < n; i++) out.set(tensors[i]!, i * perImage);
    return out;
  };

  const rows: ForwardRow[] = [];
  const bareMs = new Map<number, number>();
  const clean = async (impl: Implementation, batch: number, fn: () => Promise<Summary>) => {
    const label = `${impl} batch ${batch}`;
    const { value, interference, attempts } = await ctx.monitor.clean(label, fn, {}, retry(label));
    return { s: value, share: interference.shareOfMachine, attempts };
  };
  const measured = async (label: string, fn: () => Promise<unknown>) => (await ctx.monitor.clean(label, () => repeat(fn, ctx.repeat), {}, retry(label))).value;
  const addRow = (impl: Implementation, batch: number, m: { s: Summary; share: number; attempts: number }, note?: string) => {
    const { s } = m;
    const row: ForwardRow = {
      impl,
      batch,
      reps: s.reps,
      medianMs: s.median,
      p10Ms: s.p10,
      p90Ms: s.p90,
      imgPerS: (batch * 1000) / s.median,
      msRatioVsBare: impl === 'bare-ort' ? 1 : ratio(s.median, bareMs.get(batch) ?? Number.NaN),
      otherCpuShare: m.share,
      attempts: m.attempts,
      ...(note ? { note } : {}),
    };
    if (impl === 'bare-ort') bareMs.set(batch, s.median);
    rows.push(row);
    progress(`${impl.padEnd(13)} batch ${String(batch).padStart(2)}: ${s.median.toFixed(1)} ms/batch, ${row.imgPerS.toFixed(1)} img/s (${s.reps} reps${m.share > 0.05 ? `, other processes used ${(100 * m.share).toFixed(0)}% of the machine` : ''})`);
  };

  // Baseline: a bare InferenceSession with the same options as Embedder.load, on a pre-made tensor.
  const session = await ort.InferenceSession.create(ctx.modelFile, {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: ctx.config.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    executionProviders: ['cpu'],
  });
  let bareReference = new Float32Array(0);
  for (const batch of BATCHES) {
    const input = new ort.Tensor('float32', batchOf(batch), [batch, 3, model.inputHeight, model.inputWidth]);
    const feeds = { [model.inputName]: input };
    addRow('bare-ort', batch, await clean('bare-ort', batch, () => repeat(() => session.run(feeds), ctx.repeat)));
    if (batch === maxBatch) bareReference = ((await session.run(feeds))[model.outputName]!.data as Float32Array).slice();
  }
  // One request's work at c=1, for the poster the HTTP section uploads: its preprocessing alone, and
  // preprocessing then a batch-1 forward pass one after the other, as a request does them. Alone,
  // each step runs in a loop of its own with warm caches; in turn, each finds the caches full of the
  // other's data. No server is involved, so this is the least a request can cost on this machine.
  const requestBytes = readFileSync(httpPoster(ctx).file);
  const shape = [1, 3, model.inputHeight, model.inputWidth];
  const forwardOf = (tensor: Float32Array) => session.run({ [model.inputName]: new ort.Tensor('float32', tensor, shape) });
  const requestPreprocess = await measured('preprocess, the HTTP poster', () => preprocess(requestBytes, spec, ctx.config.maxPixels));
  const inTurnBare = await measured('preprocess then bare ORT', async () => forwardOf((await preprocess(requestBytes, spec, ctx.config.maxPixels)).tensor));
  await session.release();

  // The server's path: the Embedder the engine loads (loadEmbedder, same config), then the MicroBatcher in front of it.
  const embedder = await loadEmbedder(model, { config: ctx.config, log: ctx.log });
  let embedderVsBareMaxAbs = 0;
  for (const batch of BATCHES) {
    const inputs = tensors.slice(0, batch);
    addRow('embedder', batch, await clean('embedder', batch, () => repeat(() => embedder.embed(inputs), ctx.repeat)));
    if (batch === maxBatch) {
      const out = await embedder.embed(inputs);
      out.forEach((v, i) => v.forEach((x, d) => (embedderVsBareMaxAbs = Math.max(embedderVsBareMaxAbs, Math.abs(x - bareReference[i * model.dims + d]!)))));
    }
  }
  const inTurnEmbedder = await measured('preprocess then embedder', async () => embedder.embed([(await preprocess(requestBytes, spec, ctx.config.maxPixels)).tensor]));
  const eventLoop = { batch: maxBatch, ...(await eventLoopDuring(() => embedder.embed(tensors.slice(0, maxBatch)))) };
  progress(`event loop during one batch-${maxBatch} embed (${eventLoop.forwardMs.toFixed(0)} ms): 1 ms timer fired ${eventLoop.timerFirings}×, longest gap ${eventLoop.longestGapMs.toFixed(0)} ms`);
  const observed: Record<string, number> = {};
  const batcherOptions = { maxBatchSize: ctx.config.batchMaxSize, maxWaitMs: ctx.config.batchMaxWaitMs, maxQueue: ctx.config.queueMax };
  const batcher = new MicroBatcher<Float32Array, Float32Array>((inputs) => embedder.embed(inputs), batcherOptions, {
    onBatch(size) {
      observed[size] = (observed[size] ?? 0) + 1;
    },
  });
  for (const batch of BATCHES) {
    const inputs = tensors.slice(0, batch);
    const m = await clean('micro-batcher', batch, () => repeat(() => Promise.all(inputs.map((t) => batcher.submit(t))), ctx.repeat));
    addRow('micro-batcher', batch, m, `${batch} concurrent submit() per round`);
  }
  const provider = embedder.provider;
  await embedder.release();

  // PyTorch eager on the checkpoint the ONNX file was exported from.
  let torch: EmbeddingResult['torch'] = null;
  let torchError: string | undefined;
  let torchVsOrtMaxAbs: number | null = null;
  const checkpoint = findCheckpoint(ctx);
  const python = process.env.MARQUEE_PYTHON || join(ctx.root, '.venv', 'bin', 'python');
  if (!checkpoint) {
    torchError = `no model.pt beside an ONNX file with sha256 ${model.fileSha256} under ${join(ctx.dataDir, 'exports')}`;
  } else if (!existsSync(python)) {
    torchError = `no Python at ${python} (set MARQUEE_PYTHON)`;
  } else {
    progress(`torch-eager: ${checkpoint}`);
    const dir = mkdtempSync(join(tmpdir(), 'marquee-bench-'));
    try {
      const checkRows = 2;
      writeFileSync(join(dir, 'in.f32'), batchOf(checkRows));
      const args = [
        join(ctx.root, 'bench', 'torch_forward.py'),
        '--checkpoint', checkpoint,
        '--threads', String(ctx.config.threads),
        '--batches', BATCHES.join(','),
        '--warmup', String(ctx.repeat.warmup),
        '--min-reps', String(ctx.repeat.minReps),
        '--max-reps', String(ctx.repeat.maxReps),
        '--min-seconds', String(ctx.repeat.minSeconds),
        '--check-in', join(dir, 'in.f32'),
        '--check-out', join(dir, 'out.f32'),
      ];
      const run = await ctx.monitor.clean('torch-eager', async () => JSON.parse(await runCapture(python, args)) as TorchReport, {}, retry('torch-eager'));
      const report = run.value;
      torch = { version: report.torch, threads: report.threads, checkpoint, loadSeconds: report.load_s };
      for (const r of report.results) {
        const s: Summary = { reps: r.reps, median: r.median_ms, mean: r.mean_ms, p10: r.p10_ms, p90: r.p90_ms, p99: Number.NaN, min: r.min_ms, max: Number.NaN };
        addRow('torch-eager', r.batch, { s, share: run.interference.shareOfMachine, attempts: run.attempts }, 'random batch, torch.inference_mode');
      }
      const torchOut = new Float32Array(readFileSync(join(dir, 'out.f32')).buffer.slice(0));
      torchVsOrtMaxAbs = 0;
      for (let i = 0; i < checkRows * model.dims; i++) torchVsOrtMaxAbs = Math.max(torchVsOrtMaxAbs, Math.abs(torchOut[i]! - bareReference[i]!));
    } catch (error) {
      torchError = (error as Error).message;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  return {
    modelVersion: model.version,
    modelFile: ctx.modelFile,
    input: { width: model.inputWidth, height: model.inputHeight, dims: model.dims },
    threads: ctx.config.threads,
    provider,
    batcher: { maxBatchSize: batcherOptions.maxBatchSize, maxWaitMs: batcherOptions.maxWaitMs, observedBatchSizes: observed },
    preprocess: preprocessResult,
    request: { posterId: httpPoster(ctx).poster.id, preprocess: requestPreprocess, inTurnBare, inTurnEmbedder },
    rows,
    parity: { embedderVsBareMaxAbs, torchVsOrtMaxAbs },
    eventLoop,
    torch,
    ...(torchError ? { torchError } : {}),
  };
}

async function benchPreprocess(sample: Buffer[], ctx: BenchContext): Promise<Omit<PreprocessResult, 'otherCpuShare' | 'attempts'>> {
  const spec = ctx.model.preprocessing;
  const maxPixels = ctx.config.maxPixels;
  for (const bytes of sample.slice(0, 10)) await preprocess(bytes, spec, maxPixels);
  const total: number[] = [];
  for (const bytes of sample) {
    const t0 = nowMs();
    await preprocess(bytes, spec, maxPixels);
    total.push(nowMs() - t0);
  }
  const decode: number[] = [];
  const resize: number[] = [];
  const norm: number[] = [];
  for (const bytes of sample) {
    const t0 = nowMs();
    const image = await decodeRgb(bytes, maxPixels, spec.background);
    const t1 = nowMs();
    const resized = await resizeRgb(image, spec);
    const t2 = nowMs();
    normalise(resized, spec);
    const t3 = nowMs();
    decode.push(t1 - t0);
    resize.push(t2 - t1);
    norm.push(t3 - t2);
  }
  // Throughput with 16 in flight: sharp spreads the work over the libuv pool, as it does under HTTP load.
  let next = 0;
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < sample.length) await preprocess(sample[next++]!, spec, maxPixels);
    }),
  );
  const concurrentMs = nowMs() - t0;
  return {
    posters: sample.length,
    total: summarise(total),
    decodeMedianMs: summarise(decode).median,
    resizeMedianMs: summarise(resize).median,
    normaliseMedianMs: summarise(norm).median,
    concurrent16PerS: (sample.length * 1000) / concurrentMs,
  };
}

async function eventLoopDuring(fn: () => Promise<unknown>): Promise<{ forwardMs: number; timerFirings: number; longestGapMs: number }> {
  let firings = 0;
  let longest = 0;
  let last = nowMs();
  const timer = setInterval(() => {
    const t = nowMs();
    longest = Math.max(longest, t - last);
    last = t;
    firings++;
  }, 1);
  const t0 = nowMs();
  await fn();
  const end = nowMs();
  clearInterval(timer);
  return { forwardMs: end - t0, timerFirings: firings, longestGapMs: Math.max(longest, end - last) };
}

interface TorchReport {
  torch: string;
  threads: number;
  load_s: number;
  results: { batch: number; reps: number; median_ms: number; mean_ms: number; p10_ms: number; p90_ms: number; min_ms: number }[];
}

/** model.pt in an export directory whose model.onnx is byte-identical to the active model's file. */
function findCheckpoint(ctx: BenchContext): string | null {
  const exports = join(ctx.dataDir, 'exports');
  if (!existsSync(exports)) return null;
  for (const name of readdirSync(exports).sort()) {
    const onnx = join(exports, name, 'model.onnx');
    const pt = join(exports, name, 'model.pt');
    if (!existsSync(onnx) || !existsSync(pt)) continue;
    if (createHash('sha256').update(readFileSync(onnx)).digest('hex') === ctx.model.fileSha256) return pt;
  }
  return null;
}

function runCapture(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}: ${err.slice(-2000)}`))));
  });
}
