/**
 * int8 against float32, side by side (issue 8, section 1):
 *
 *   npm run build && node --import tsx bench/precision.ts <float32 model dir> [data dir] > bench/results/precision.md
 *
 * A fresh data dir gets the demo catalog (`marquee import`) and the model (`marquee models add`
 * with MARQUEE_PRECISION=int8, which quantises it the way the server does: calibrated on catalog
 * posters through the server's preprocessing). Then, in this process:
 * - throughput of both variants' files under onnxruntime, the server's session options, batch 1 and
 *   16, on real preprocessed posters, timed in alternation so that both see the same machine;
 * - parity: every poster embedded by both variants through the server's embedding path
 *   (embedCatalog); cosine of each poster's two embeddings; the mean overlap of each test
 *   poster's 8 nearest train posters; Recall@1 micro / macro on the test split (train gallery,
 *   exact search: the gate's `splitSummary`) of each.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ort from 'onnxruntime-node';
import { loadConfig } from '../src/config.js';
import { splitSummary } from '../src/eval/evaluate.js';
import { createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import { preprocess } from '../src/model/preprocess.js';
import { embedCatalog } from '../src/service/catalog-embedding.js';
import { loadEmbedder } from '../src/service/engine.js';
import { createServices } from '../src/service/startup.js';
import type { ModelVersion } from '../src/state/models.js';
import { ROOT } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { nowMs, summarise } from './lib/stats.js';

const modelDir = resolve(process.argv[2] ?? '');
const dataDir = resolve(process.argv[3] ?? '/tmp/marquee-precision');
const catalogDir = resolve(ROOT, '..', 'shared', 'posters');
const log = (line: string) => process.stderr.write(`[precision ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const machine = machineInfo();

function marquee(args: string[]): string {
  const result = spawnSync(process.execPath, [join(ROOT, 'bin', 'marquee.js'), ...args], {
    env: { ...process.env, MARQUEE_DATA_DIR: dataDir, MARQUEE_PRECISION: 'int8', LOG_LEVEL: 'warn' },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`marquee ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

mkdirSync(dataDir, { recursive: true });
log(`importing ${catalogDir}`);
marquee(['import', catalogDir]);
log(`adding ${modelDir} (quantised to int8 by the server's path)`);
const added = JSON.parse(marquee(['models', 'add', modelDir]).trim().split('\n').pop()!) as { model_version: string; variants: string[] };
if (!added.variants.includes('int8')) throw new Error(`no int8 variant: ${JSON.stringify(added)}`);

const config = loadConfig({ ...process.env, MARQUEE_DATA_DIR: dataDir, MARQUEE_CATALOG: '' });
const svc = await createServices(config, createLogger('warn'), new Metrics());
const fp32 = (await svc.models.get(added.model_version, 'fp32'))!;
const int8 = (await svc.models.get(added.model_version, 'int8'))!;
const variants: ModelVersion[] = [fp32, int8];

// Throughput: bare sessions with the server's options, batches of real preprocessed posters.
const posters = await svc.catalog.all();
const tensors = await Promise.all(
  posters.slice(0, 16).map(async (p) => (await preprocess(readFileSync(join(dataDir, p.imagePath)), fp32.preprocessing, config.maxPixels)).tensor),
);
const sessions = await Promise.all(
  variants.map((v) =>
    ort.InferenceSession.create(join(dataDir, v.filePath), {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: config.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      executionProviders: ['cpu'],
    }),
  ),
);
const feed = (batch: number) => {
  const data = new Float32Array(batch * tensors[0]!.length);
  for (let i = 0; i < batch; i++) data.set(tensors[i % tensors.length]!, i * tensors[0]!.length);
  return { [fp32.inputName]: new ort.Tensor('float32', data, [batch, 3, fp32.inputHeight, fp32.inputWidth]) };
};
const throughput: { batch: number; fp32: ReturnType<typeof summarise>; int8: ReturnType<typeof summarise> }[] = [];
for (const batch of [1, 16]) {
  const input = feed(batch);
  for (const s of sessions) for (let i = 0; i < 3; i++) await s.run(input);
  const samples: number[][] = [[], []];
  const reps = batch === 1 ? 150 : 15;
  for (let rep = 0; rep < reps; rep++) {
    for (let v = 0; v < sessions.length; v++) {
      const t0 = nowMs();
      await sessions[v]!.run(input);
      samples[v]!.push(nowMs() - t0);
    }
  }
  throughput.push({ batch, fp32: summarise(samples[0]!), int8: summarise(samples[1]!) });
  log(`batch ${batch}: fp32 ${summarise(samples[0]!).median.toFixed(1)} ms, int8 ${summarise(samples[1]!).median.toFixed(1)} ms`);
}
for (const s of sessions) await s.release();

// Parity: the catalog embedded by both variants through the server's embedding path.
for (const variant of variants) {
  log(`embedding the catalog with the ${variant.precision} variant`);
  const embedder = await loadEmbedder(variant, svc);
  await embedCatalog(variant, embedder, svc.embeddings, dataDir, config.maxPixels, svc.log);
  await embedder.release();
}
const sets = await Promise.all(variants.map((v) => svc.embeddings.load(v, v.dims)));
const rowOf = (set: (typeof sets)[0]) => new Map([...set.keys].map((key, i) => [Number(key), i]));
const rows = sets.map(rowOf);
const vectorOf = (v: number, key: number) => sets[v]!.vectors.subarray(rows[v]!.get(key)! * fp32.dims, (rows[v]!.get(key)! + 1) * fp32.dims);
const dot = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const cosines = posters.map((p) => dot(vectorOf(0, p.key), vectorOf(1, p.key))).sort((a, b) => a - b);
const test = posters.filter((p) => p.split === 'test');
const train = posters.filter((p) => p.split === 'train');
const top8 = (v: number, q: number) =>
  new Set(
    train
      .map((g) => ({ key: g.key, s: dot(vectorOf(v, q), vectorOf(v, g.key)) }))
      .sort((a, b) => b.s - a.s)
      .slice(0, 8)
      .map((x) => x.key),
  );
const overlap = test.reduce((sum, q) => {
  const a = top8(0, q.key);
  const b = top8(1, q.key);
  return sum + [...a].filter((k) => b.has(k)).length / 8;
}, 0) / test.length;
const summaries = await Promise.all(variants.map((v) => splitSummary(svc, v, 'test')));
const r1 = summaries.map((s) => ({ micro: s.micro['recall@1']!, macro: s.macro['recall@1']! }));

const pct = (q: number) => cosines[Math.min(cosines.length - 1, Math.floor(q * cosines.length))]!;
const out: string[] = [];
out.push('# int8 against float32');
out.push('');
out.push(
  `${machine.date}, ${machine.cpuModel} (${machine.cores} cores), Node ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}; ` +
    `\`node --import tsx bench/precision.ts ${process.argv[2]}\`. Model ${added.model_version} (${fp32.inputWidth}×${fp32.inputHeight}), ` +
    `int8 made by \`marquee models add\` with MARQUEE_PRECISION=int8 (${JSON.stringify((await svc.models.variantDetails(added.model_version, 'int8'))?.quantization ?? {})
      .slice(0, 200)}…). Load average at the start: ${machine.loadAverageAtStart.toFixed(2)}.`,
);
out.push('');
out.push('## Throughput (onnxruntime, the server\'s session options, timed in alternation)');
out.push('');
out.push('| batch | float32 ms (img/s) | int8 ms (img/s) | int8 speed-up | target |');
out.push('| ---: | ---: | ---: | ---: | --- |');
for (const t of throughput) {
  const ips = (ms: number) => ((1000 * t.batch) / ms).toFixed(1);
  out.push(`| ${t.batch} | ${t.fp32.median.toFixed(1)} (${ips(t.fp32.median)}) | ${t.int8.median.toFixed(1)} (${ips(t.int8.median)}) | **${(t.fp32.median / t.int8.median).toFixed(2)}×** | ≥ 1.8× |`);
}
out.push('');
out.push(`## Parity (${posters.length} posters embedded by both through the server's path)`);
out.push('');
out.push(`- Cosine of a poster's two embeddings: median **${pct(0.5).toFixed(5)}**, 1st percentile **${pct(0.01).toFixed(5)}**, minimum ${cosines[0]!.toFixed(5)}.`);
out.push(`- Mean overlap of the 8 nearest train posters of each of the ${test.length} test posters: **${overlap.toFixed(3)}** (target ≥ 0.9).`);
out.push(
  `- Recall@1 on the test split (train gallery, exact): float32 ${r1[0]!.micro.toFixed(4)} / ${r1[0]!.macro.toFixed(4)}, int8 ${r1[1]!.micro.toFixed(4)} / ${r1[1]!.macro.toFixed(4)} (micro / macro); ` +
    `macro difference **${(r1[1]!.macro - r1[0]!.macro).toFixed(4)}** (target within ±0.01).`,
);
out.push('');
process.stdout.write(`${out.join('\n')}\n`);
await svc.state.close();
