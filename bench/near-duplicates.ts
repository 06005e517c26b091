/**
 * Near-duplicates (issue 18, point 3): which signal tells the same poster re-encoded, resized,
 * cropped, recoloured or framed from the other posters of the catalog, at what threshold.
 *
 *   node --import tsx bench/near-duplicates.ts > bench/results/near-duplicates.md
 *
 * The set: 500 catalog posters drawn with a fixed seed, each transformed seven ways (TRANSFORMS);
 * a copy's true pair is its source, every other catalog poster a false one. Signals: the served
 * embedding (models/default through the server's preprocessing and embedder; cosine), three 64-bit
 * hashes for comparison (dHash, pHash, pHash of the whole or the border-trimmed picture), the
 * server's perceptual hash (src/search/perceptual-hash.ts, its distance src/search/near-duplicates.ts),
 * and that hash combined with the embedding. Thresholds are chosen on the first 250 drawn posters
 * and reported on the other 250 (and on all 500). False pairs are counted over every pair of
 * distinct catalog posters (25.9 million), and over every (copy, other catalog poster) pair.
 * BENCH_CACHE=<dir> keeps the embeddings between runs (they take minutes on 2 cores).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'csv-parse/sync';
import sharp, { type Sharp } from 'sharp';
import { seededRandom, sample } from '../src/figures/random.js';
import { createLogger } from '../src/log.js';
import { Embedder } from '../src/model/embedder.js';
import { preprocess, type PreprocessingSpec } from '../src/model/preprocess.js';
import { distanceBelow, hashWords, NEAR_DUPLICATE, PerceptualHashIndex, SLOT } from '../src/search/near-duplicates.js';
import { HASH_BITS, perceptualHash, type PerceptualHash } from '../src/search/perceptual-hash.js';
import { ROOT } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { nowMs, percentile } from './lib/stats.js';

const CATALOG = resolve(ROOT, '..', 'shared', 'posters');
const MODEL_DIR = join(ROOT, 'models', 'default');
const SAMPLE = 500;
const SEED = 18;
const MAX_PIXELS = 40_000_000;
const TARGET = { recall: 0.95, falsePairRate: 1e-3 };
/**
 * The same artwork under several ids, found by looking at the closest distinct pairs under every
 * signal (and at every ahash collision): MGM's placeholder with only the title strip changed.
 */
const KNOWN_DUPLICATES = [['tt0093658', 'tt0100100', 'tt0095275']];

const log = (line: string) => process.stderr.write(`[near-duplicates ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const machine = machineInfo();

const jpeg90 = (image: Sharp) => image.jpeg({ quality: 90 }).toBuffer();
async function cropped(bytes: Buffer, share: number, where: 'centre' | 'top-left'): Promise<Buffer> {
  const { width, height } = await sharp(bytes).metadata();
  const w = Math.round(width! * share);
  const h = Math.round(height! * share);
  const [left, top] = where === 'centre' ? [Math.floor((width! - w) / 2), Math.floor((height! - h) / 2)] : [0, 0];
  return jpeg90(sharp(bytes).extract({ left, top, width: w, height: h }));
}
async function scaled(bytes: Buffer, factor: number): Promise<Buffer> {
  const { width, height } = await sharp(bytes).metadata();
  return jpeg90(sharp(bytes).resize(Math.round(width! * factor), Math.round(height! * factor), { fit: 'fill' }));
}

/** Each copy is re-encoded as JPEG q90 unless the transform is the encoding itself. */
const TRANSFORMS: Record<string, { describe: string; apply: (bytes: Buffer, index: number) => Promise<Buffer> }> = {
  jpeg_q30: { describe: 'JPEG quality 30', apply: (b) => sharp(b).jpeg({ quality: 30 }).toBuffer() },
  webp: { describe: 'WebP quality 75', apply: (b) => sharp(b).webp({ quality: 75 }).toBuffer() },
  resize_0_5x: { describe: 'half the width and height (Lanczos-3)', apply: (b) => scaled(b, 0.5) },
  resize_2x: { describe: 'twice the width and height (Lanczos-3)', apply: (b) => scaled(b, 2) },
  crop_90: { describe: 'the centred 90 % of the width and of the height (81 % of the area)', apply: (b) => cropped(b, 0.9, 'centre') },
  colour: { describe: 'hue rotated 20°, brightness ×1.1, saturation ×1.2', apply: (b) => jpeg90(sharp(b).modulate({ brightness: 1.1, saturation: 1.2, hue: 20 })) },
  border: {
    describe: 'a border of 5 % of the width on every side, white and black in turn',
    apply: async (b, index) => {
      const { width } = await sharp(b).metadata();
      const p = Math.round(width! * 0.05);
      const background = index % 2 ? { r: 0, g: 0, b: 0 } : { r: 255, g: 255, b: 255 };
      return jpeg90(sharp(b).extend({ top: p, bottom: p, left: p, right: p, background }));
    },
  },
};
const TRANSFORM_NAMES = Object.keys(TRANSFORMS);
/** Not in the target set: crops the served hash's stored crops (95 % and 85 %) are not, off the centre too. */
const BEYOND: Record<string, { describe: string; apply: (bytes: Buffer) => Promise<Buffer> }> = {
  crop_95: { describe: 'the centred 95 %', apply: (b) => cropped(b, 0.95, 'centre') },
  crop_80: { describe: 'the centred 80 %', apply: (b) => cropped(b, 0.8, 'centre') },
  crop_90_corner: { describe: 'the top-left 90 % (off the centre)', apply: (b) => cropped(b, 0.9, 'top-left') },
  border_10: { describe: 'a border of 10 % of the width, grey', apply: async (b) => {
    const { width } = await sharp(b).metadata();
    const p = Math.round(width! * 0.1);
    return jpeg90(sharp(b).extend({ top: p, bottom: p, left: p, right: p, background: { r: 128, g: 128, b: 128 } }));
  } },
};

// ---------------------------------------------------------------- 64-bit hashes, for comparison

function bits64(set: (bit: number) => boolean): [number, number] {
  let hi = 0;
  let lo = 0;
  for (let bit = 0; bit < 32; bit++) hi = (hi << 1) | (set(bit) ? 1 : 0);
  for (let bit = 32; bit < 64; bit++) lo = (lo << 1) | (set(bit) ? 1 : 0);
  return [hi >>> 0, lo >>> 0];
}
const grey = (bytes: Buffer) => sharp(bytes, { pages: 1 }).autoOrient().flatten({ background: '#ffffff' }).greyscale();

/** dHash: 9x8 grey, each bit whether a pixel is darker than its right neighbour. */
async function dHash(bytes: Buffer): Promise<[number, number]> {
  const g = await grey(bytes).resize(9, 8, { fit: 'fill' }).raw().toBuffer();
  return bits64((bit) => g[(bit >> 3) * 9 + (bit & 7)]! < g[(bit >> 3) * 9 + (bit & 7) + 1]!);
}

const COS32 = Array.from({ length: 8 }, (_, k) => Array.from({ length: 32 }, (_, n) => Math.cos((Math.PI / 32) * (n + 0.5) * k)));
/** pHash: 32x32 grey, the 8x8 lowest DCT frequencies against their median; `trim` first takes off a uniform border (sharp's trim). */
async function pHash64(bytes: Buffer, trim: boolean): Promise<[number, number]> {
  let input = bytes;
  if (trim) input = await grey(bytes).trim({ threshold: 20 }).png().toBuffer().catch(() => bytes);
  const g = await grey(input).resize(32, 32, { fit: 'fill' }).raw().toBuffer();
  const coefficients: number[] = [];
  for (let ky = 0; ky < 8; ky++) {
    for (let kx = 0; kx < 8; kx++) {
      let sum = 0;
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) sum += g[y * 32 + x]! * COS32[kx]![x]! * COS32[ky]![y]!;
      coefficients.push(sum);
    }
  }
  const sorted = [...coefficients].sort((a, b) => a - b);
  const median = (sorted[31]! + sorted[32]!) / 2;
  return bits64((bit) => coefficients[bit]! > median);
}

// ---------------------------------------------------------------- the set and its signals

const rows = parse(readFileSync(join(CATALOG, 'movies.csv'), 'utf8'), { columns: true, bom: true }) as Record<string, string>[];
const picked = sample(rows, SAMPLE, seededRandom(SEED));
const pickedIndex = new Map(picked.map((row, i) => [row.id!, i]));
interface Item {
  id: string;
  transform: string | null;
}
const items: Item[] = [...rows.map((r) => ({ id: r.id!, transform: null })), ...TRANSFORM_NAMES.flatMap((t) => picked.map((r) => ({ id: r.id!, transform: t })))];
const nCatalog = rows.length;
const n = items.length;
const sidecar = JSON.parse(readFileSync(join(MODEL_DIR, 'model.json'), 'utf8')) as { embedding_dim: number; input: { name: string }; output: { name: string }; preprocessing: PreprocessingSpec };
const spec = sidecar.preprocessing;
const DIMS = sidecar.embedding_dim;
const original = (id: string) => readFileSync(join(CATALOG, 'images', `${id}.jpg`));
const bytesOf = async (item: Item): Promise<Buffer> => (item.transform ? TRANSFORMS[item.transform]!.apply(original(item.id), pickedIndex.get(item.id)!) : original(item.id));

const dhashes = new Uint32Array(2 * n);
const phashes = new Uint32Array(4 * n); // whole hi, lo, trimmed hi, lo
const servedWords = new Uint32Array(SLOT * n);
const servedHashes: PerceptualHash[] = [];
const hashMs: number[] = [];
log(`hashing ${n} pictures (${nCatalog} catalog posters, ${SAMPLE} x ${TRANSFORM_NAMES.length} copies)`);
for (let i = 0; i < n; i++) {
  const bytes = await bytesOf(items[i]!);
  const started = nowMs();
  const hash = await perceptualHash(bytes, MAX_PIXELS);
  hashMs.push(nowMs() - started);
  servedHashes.push(hash);
  servedWords.set(hashWords(hash), SLOT * i);
  dhashes.set(await dHash(bytes), 2 * i);
  phashes.set([...(await pHash64(bytes, false)), ...(await pHash64(bytes, true))], 4 * i);
  if (i % 2000 === 0) log(`hashed ${i}/${n}`);
}

const cacheDir = process.env.BENCH_CACHE;
const cacheKey = `${readFileSync(join(MODEL_DIR, 'model.json'), 'utf8').length}:${n}:${SEED}`;
let embeddings: Float32Array;
if (cacheDir && existsSync(join(cacheDir, 'embeddings.json')) && JSON.parse(readFileSync(join(cacheDir, 'embeddings.json'), 'utf8')).key === cacheKey) {
  embeddings = new Float32Array(readFileSync(join(cacheDir, 'embeddings.f32')).buffer.slice(0));
  log(`embeddings from ${cacheDir}`);
} else {
  log(`embedding ${n} pictures with ${MODEL_DIR}`);
  const embedder = await Embedder.load(
    { modelPath: join(MODEL_DIR, 'model.onnx'), inputName: sidecar.input.name, outputName: sidecar.output.name, width: spec.width, height: spec.height, dims: DIMS, device: 'cpu', threads: 2, spinning: false },
    createLogger('warn'),
  );
  embeddings = new Float32Array(n * DIMS);
  for (let start = 0; start < n; start += 16) {
    const batch = items.slice(start, start + 16);
    const tensors = await Promise.all(batch.map(async (item) => (await preprocess(await bytesOf(item), spec, MAX_PIXELS)).tensor));
    (await embedder.embed(tensors)).forEach((vector, j) => embeddings.set(vector, (start + j) * DIMS));
    if (start % 1600 === 0) log(`embedded ${start}/${n}`);
  }
  await embedder.release();
  if (cacheDir) {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(join(cacheDir, 'embeddings.f32'), Buffer.from(embeddings.buffer));
    writeFileSync(join(cacheDir, 'embeddings.json'), JSON.stringify({ key: cacheKey }));
  }
}

// ---------------------------------------------------------------- distances

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}
const dDistance = (a: number, b: number) => popcount(dhashes[2 * a]! ^ dhashes[2 * b]!) + popcount(dhashes[2 * a + 1]! ^ dhashes[2 * b + 1]!);
const wholeDistance = (a: number, b: number) => popcount(phashes[4 * a]! ^ phashes[4 * b]!) + popcount(phashes[4 * a + 1]! ^ phashes[4 * b + 1]!);
const trimmedDistance = (a: number, b: number) => popcount(phashes[4 * a + 2]! ^ phashes[4 * b + 2]!) + popcount(phashes[4 * a + 3]! ^ phashes[4 * b + 3]!);
const servedDistance = (a: number, b: number) => distanceBelow(servedWords, SLOT * a, servedWords, SLOT * b, HASH_BITS + 1);
function cosine(a: number, b: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const oa = a * DIMS;
  const ob = b * DIMS;
  for (let i = 0; i < DIMS; i += 4) {
    s0 += embeddings[oa + i]! * embeddings[ob + i]!;
    s1 += embeddings[oa + i + 1]! * embeddings[ob + i + 1]!;
    s2 += embeddings[oa + i + 2]! * embeddings[ob + i + 2]!;
    s3 += embeddings[oa + i + 3]! * embeddings[ob + i + 3]!;
  }
  return s0 + s1 + s2 + s3;
}

/** Each signal's distance, smaller is closer: hash distances in bits; the embedding's (1 - cosine) in steps of 0.001. */
const SIGNALS = { embedding: 2001, dhash: 65, phash: 65, phash_trim: 65, served: HASH_BITS + 1 } as const;
type Signal = keyof typeof SIGNALS;
const SIGNAL_NAMES = Object.keys(SIGNALS) as Signal[];
const COSINE_STEPS = SIGNALS.embedding;
const cosineStep = (c: number) => Math.min(COSINE_STEPS - 1, Math.max(0, Math.floor((1 - c) * 1000 + 1e-9)));
/** Served-hash distances up to this are kept with their cosine (the combined rules look no further). */
const BAND = 120;

interface Distances {
  signal: Record<Signal, number>;
  cosine: number;
}
function distances(a: number, b: number): Distances {
  const c = cosine(a, b);
  const whole = wholeDistance(a, b);
  return {
    signal: { embedding: cosineStep(c), dhash: dDistance(a, b), phash: whole, phash_trim: Math.min(whole, trimmedDistance(a, b)), served: servedDistance(a, b) },
    cosine: c,
  };
}

/** Counts of pairs by each signal's distance, and by (served distance, cosine step) up to BAND for the combined rules. */
interface Counts {
  pairs: number;
  bySignal: Record<Signal, Float64Array>;
  joint: Float64Array;
}
const newCounts = (): Counts => ({
  pairs: 0,
  bySignal: Object.fromEntries(SIGNAL_NAMES.map((s) => [s, new Float64Array(SIGNALS[s])])) as Record<Signal, Float64Array>,
  joint: new Float64Array((BAND + 1) * COSINE_STEPS),
});

/**
 * A picture's closest false partner under each signal, and the highest cosine among its false
 * partners at each served distance up to BAND: whether a rule would flag it wrongly, as a check
 * would were it added to the rest of the catalog.
 */
interface Nearest {
  signal: Record<Signal, number>;
  band: Float32Array;
}
const newNearest = (): Nearest => ({ signal: { ...SIGNALS }, band: new Float32Array(BAND + 1).fill(-2) });

function count(counts: Counts, d: Distances, nearest: Nearest[]): void {
  counts.pairs += 1;
  for (const s of SIGNAL_NAMES) counts.bySignal[s][d.signal[s]]! += 1;
  const hashDistance = d.signal.served;
  if (hashDistance <= BAND) counts.joint[hashDistance * COSINE_STEPS + d.signal.embedding]! += 1;
  for (const x of nearest) {
    for (const s of SIGNAL_NAMES) if (d.signal[s] < x.signal[s]) x.signal[s] = d.signal[s];
    if (hashDistance <= BAND && d.cosine > x.band[hashDistance]!) x.band[hashDistance] = d.cosine;
  }
}

const catalogIndex = new Map(rows.map((r, i) => [r.id!, i]));
const knownPairs = new Set<string>();
for (const group of KNOWN_DUPLICATES) for (const a of group) for (const b of group) if (a < b) knownPairs.add(`${a} ${b}`);
const isKnownPair = (a: number, b: number) => knownPairs.has([rows[a]!.id!, rows[b]!.id!].sort().join(' '));

log('every pair of distinct catalog posters');
const distinct = newCounts();
const posterNearest = Array.from({ length: nCatalog }, newNearest);
const distinctStarted = nowMs();
for (let a = 0; a < nCatalog; a++) {
  for (let b = a + 1; b < nCatalog; b++) if (!isKnownPair(a, b)) count(distinct, distances(a, b), [posterNearest[a]!, posterNearest[b]!]);
}
log(`${distinct.pairs} pairs in ${((nowMs() - distinctStarted) / 1000).toFixed(0)} s`);

/** A copy: its distances to its source, the catalog posters near it by the served hash (which one a check would name), its closest false partners. */
interface Copy {
  half: 'selection' | 'held-out';
  transform: string;
  source: number;
  toSource: Distances;
  near: { poster: number; d: number; c: number }[];
  nearestOther: Nearest;
}
const copies: Copy[] = [];
const others: Record<string, Counts> = Object.fromEntries(TRANSFORM_NAMES.map((t) => [t, newCounts()]));
log('every copy against every other catalog poster');
for (let i = nCatalog; i < n; i++) {
  const item = items[i]!;
  const source = catalogIndex.get(item.id)!;
  const toSource = distances(i, source);
  const near: Copy['near'] = [{ poster: source, d: toSource.signal.served, c: toSource.cosine }];
  const nearestOther = newNearest();
  for (let b = 0; b < nCatalog; b++) {
    if (b === source) continue;
    const d = distances(i, b);
    count(others[item.transform!]!, d, [nearestOther]);
    if (d.signal.served <= BAND) near.push({ poster: b, d: d.signal.served, c: d.cosine });
  }
  copies.push({ half: pickedIndex.get(item.id)! < SAMPLE / 2 ? 'selection' : 'held-out', transform: item.transform!, source, toSource, near, nearestOther });
}

// ---------------------------------------------------------------- rules and their figures

interface Rule {
  family: string;
  threshold: string;
  copyMatches: (copy: Copy) => boolean;
  falsePairs: (counts: Counts) => number;
  /** Whether it flags a picture with these closest false partners. */
  falselyFlags: (nearest: Nearest) => boolean;
  /** For the served hash's rules: whether a pair at this served distance and cosine is flagged. */
  accepts?: (d: number, c: number) => boolean;
}

/** A rule whose false pairs are counted once per set of counts (the choice below asks many times). */
function remembered(rule: Rule): Rule {
  const falsePairs = new Map<Counts, number>();
  return { ...rule, falsePairs: (counts) => falsePairs.get(counts) ?? (falsePairs.set(counts, rule.falsePairs(counts)), falsePairs.get(counts)!) };
}

const sum = (values: Float64Array) => values.reduce((s, v) => s + v, 0);

function signalRule(signal: Signal, threshold: number): Rule {
  return remembered({
    family: signal,
    threshold: signal === 'embedding' ? `cosine > ${(1 - (threshold + 1) / 1000).toFixed(3)}` : `distance ≤ ${threshold}`,
    copyMatches: (copy) => copy.toSource.signal[signal] <= threshold,
    falsePairs: (counts) => sum(counts.bySignal[signal].subarray(0, threshold + 1)),
    falselyFlags: (nearest) => nearest.signal[signal] <= threshold,
    ...(signal === 'served' ? { accepts: (d: number) => d <= threshold } : {}),
  });
}

/** The served hash within `sure`, or within `max` while the embeddings are at least `minSimilarity` alike. */
function combinedRule(sure: number, max: number, minSimilarity: number): Rule {
  const accepts = (d: number, c: number) => d <= sure || (d <= max && c >= minSimilarity);
  // Steps below (1 - minSimilarity) x 1000 hold the cosines above minSimilarity.
  const maxStep = Math.round((1 - minSimilarity) * 1000) - 1;
  return remembered({
    family: 'served + embedding',
    threshold: `distance ≤ ${sure}, or ≤ ${max} with cosine ≥ ${minSimilarity}`,
    copyMatches: (copy) => accepts(copy.toSource.signal.served, copy.toSource.cosine),
    falsePairs: (counts) => {
      let total = sum(counts.bySignal.served.subarray(0, sure + 1));
      for (let d = sure + 1; d <= max; d++) total += sum(counts.joint.subarray(d * COSINE_STEPS, d * COSINE_STEPS + maxStep + 1));
      return total;
    },
    falselyFlags: (nearest) => nearest.band.some((c, d) => c > -2 && accepts(d, c)),
    accepts,
  });
}

const copySets = new Map<string, Copy[]>();
const recalls = new WeakMap<Rule, Map<string, number>>();
function recall(rule: Rule, transform: string | null, half: Copy['half'] | null): number {
  const key = `${transform}|${half}`;
  if (!recalls.has(rule)) recalls.set(rule, new Map());
  const known = recalls.get(rule)!.get(key);
  if (known !== undefined) return known;
  if (!copySets.has(key)) copySets.set(key, copies.filter((c) => (transform === null || c.transform === transform) && (half === null || c.half === half)));
  const set = copySets.get(key)!;
  const value = set.filter(rule.copyMatches).length / set.length;
  recalls.get(rule)!.set(key, value);
  return value;
}

/** The lower end of the 95 % Wilson interval of a proportion. */
function wilsonLower(p: number, size: number, z = 1.96): number {
  const centre = p + (z * z) / (2 * size);
  const spread = z * Math.sqrt((p * (1 - p)) / size + (z * z) / (4 * size * size));
  return (centre - spread) / (1 + (z * z) / size);
}
/** Recall at least the target on every transform of the selection half with 95 % confidence, within the false-pair budget. */
const meetsTarget = (rule: Rule) =>
  TRANSFORM_NAMES.every((t) => wilsonLower(recall(rule, t, 'selection'), SAMPLE / 2) >= TARGET.recall) &&
  rule.falsePairs(distinct) / distinct.pairs <= TARGET.falsePairRate;

/**
 * The candidate with the fewest false catalog pairs among those meeting the target on the selection
 * half (then the best recall there, then the first in the list: the narrowest); else the best
 * selection recall within the false-pair budget.
 */
function choose(candidates: Rule[]): { rule: Rule; met: boolean } {
  const byFalse = (a: Rule, b: Rule) => a.falsePairs(distinct) - b.falsePairs(distinct) || recall(b, null, 'selection') - recall(a, null, 'selection');
  const meeting = candidates.filter(meetsTarget).sort(byFalse);
  if (meeting.length > 0) return { rule: meeting[0]!, met: true };
  const within = candidates.filter((r) => r.falsePairs(distinct) / distinct.pairs <= TARGET.falsePairRate);
  within.sort((a, b) => recall(b, null, 'selection') - recall(a, null, 'selection') || byFalse(a, b));
  return { rule: within[0]!, met: false };
}

const range = (from: number, to: number, step = 1) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);
const candidatesOf: Record<string, Rule[]> = {
  embedding: range(0, 400).map((t) => signalRule('embedding', t)),
  dhash: range(0, 32).map((t) => signalRule('dhash', t)),
  phash: range(0, 32).map((t) => signalRule('phash', t)),
  phash_trim: range(0, 32).map((t) => signalRule('phash_trim', t)),
  served: range(0, BAND).map((t) => signalRule('served', t)),
  'served + embedding': range(40, 96, 4).flatMap((sure) => range(sure + 4, BAND, 4).flatMap((max) => range(50, 95, 5).map((c) => combinedRule(sure, max, c / 100)))),
};
const chosen = Object.fromEntries(Object.entries(candidatesOf).map(([name, candidates]) => [name, choose(candidates)]));
const servedRule = signalRule('served', NEAR_DUPLICATE.maxDistance);

log('pictures beyond the set');
const beyond: Record<string, number[]> = {};
for (const [name, transform] of Object.entries(BEYOND)) {
  beyond[name] = [];
  for (const row of picked) {
    const hash = hashWords(await perceptualHash(await transform.apply(original(row.id!)), MAX_PIXELS));
    beyond[name]!.push(distanceBelow(hash, 0, servedWords, SLOT * catalogIndex.get(row.id!)!, HASH_BITS + 1));
  }
}

// ---------------------------------------------------------------- cost

log('the cost of the check on an add');
const index = new PerceptualHashIndex();
for (let i = 0; i < nCatalog; i++) index.put(i, servedHashes[i]!);
const checkMs: number[] = [];
const scanMs: number[] = [];
const timed = copies.filter((c) => c.half === 'held-out').filter((_, i) => i % 5 === 0);
for (const copy of timed) {
  const bytes = await TRANSFORMS[copy.transform]!.apply(original(rows[copy.source]!.id!), pickedIndex.get(rows[copy.source]!.id!)!);
  const started = nowMs();
  const hash = await perceptualHash(bytes, MAX_PIXELS);
  const scanStarted = nowMs();
  index.within(hash, NEAR_DUPLICATE.maxDistance);
  const ended = nowMs();
  scanMs.push(ended - scanStarted);
  checkMs.push(ended - started);
}
const million = new PerceptualHashIndex();
for (let key = 0; key < 1_000_000; key++) {
  const hex = randomBytes(HASH_BITS / 2).toString('hex');
  const part = HASH_BITS / 4;
  million.put(key, { whole: hex.slice(0, part), trimmed: hex.slice(part, 2 * part), crop95: hex.slice(2 * part, 3 * part), crop85: hex.slice(3 * part) });
}
const millionMs: number[] = [];
for (let rep = 0; rep < 10; rep++) {
  const started = nowMs();
  million.within(servedHashes[rep]!, NEAR_DUPLICATE.maxDistance);
  millionMs.push(nowMs() - started);
}
const pairsStarted = nowMs();
const catalogPairs = await index.pairs(NEAR_DUPLICATE.maxDistance);
const pairsMs = nowMs() - pairsStarted;
const p50 = (samples: number[]) => percentile(Float64Array.from(samples).sort(), 0.5);

// ---------------------------------------------------------------- the report

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const rate = (x: number) => (x === 0 ? '0' : x < 1e-4 ? `${(x * 1e6).toFixed(1)} × 10⁻⁶` : `${(x * 100).toFixed(3)} %`);
const wronglyFlagged = (rule: Rule) => ({
  posters: posterNearest.filter((x) => rule.falselyFlags(x)).length / nCatalog,
  copies: copies.filter((c) => rule.falselyFlags(c.nearestOther)).length / copies.length,
});
const titled = (id: string) => `\`${id}\`${rows[catalogIndex.get(id)!]!.title ? ` (${rows[catalogIndex.get(id)!]!.title})` : ''}`;
const out: string[] = [];
out.push('# Near-duplicates: which signal, at what threshold');
out.push('');
out.push(
  `${machine.date.slice(0, 10)}, 2-core AMD EPYC with AVX-512 (\`${machine.cpuModel}\`, ${machine.cores} cores, shared with other processes: load average ${machine.loadAverageAtStart.toFixed(1)} at the start), ` +
    `Node ${machine.node}, sharp ${machine.sharp}, onnxruntime-node ${machine.onnxruntimeNode}; \`node --import tsx bench/near-duplicates.ts\`.`,
);
out.push('');
out.push(
  `**The set.** ${SAMPLE} of the ${nCatalog} catalog posters (\`../shared/posters\`), drawn with seed ${SEED}, each transformed seven ways ` +
    `(${SAMPLE * TRANSFORM_NAMES.length} copies; every copy but the encodings themselves saved as JPEG q90):`,
);
out.push('');
for (const [name, t] of Object.entries(TRANSFORMS)) out.push(`- \`${name}\`: ${t.describe}`);
out.push('');
out.push(
  "A copy's true pair is its source. False pairs: every pair of distinct catalog posters " +
    `(${distinct.pairs.toLocaleString('en')}; the target allows 0.1 % of them, ${Math.round(distinct.pairs * TARGET.falsePairRate).toLocaleString('en')}), ` +
    `and every copy against every catalog poster but its source (${others[TRANSFORM_NAMES[0]!]!.pairs.toLocaleString('en')} per transform). ` +
    `Thresholds are chosen on the first ${SAMPLE / 2} drawn posters: the fewest false catalog pairs among those with recall ≥ ${TARGET.recall} on every transform ` +
    `with 95 % confidence (the lower end of its Wilson interval over the ${SAMPLE / 2} copies: a threshold chosen where recall just reaches 0.95 misses it on new posters about half the time) ` +
    `and false pairs ≤ 0.1 %; when none has that, the best recall within the 0.1 %. Recall is reported on the other ${SAMPLE / 2} (held out) and on all ${SAMPLE}.`,
);
out.push('');
out.push('**Signals.**');
out.push('');
out.push(`- \`embedding\`: the served model (\`models/default\`, int8, ${spec.width}×${spec.height}) through the server's preprocessing and embedder; cosine similarity.`);
out.push('- `dhash`: 64-bit difference hash (9×8 grey).');
out.push('- `phash`: 64-bit DCT hash (32×32 grey, the 8×8 lowest frequencies against their median).');
out.push('- `phash_trim`: `phash`, or the same hash of the picture with a uniform border trimmed off (sharp\'s trim), whichever distance is smaller.');
out.push(
  '- `served`: what the server stores per poster (`src/search/perceptual-hash.ts`): 256-bit DCT hashes (grey at most 128 px a side, area-averaged to 64×64, ' +
    'the 16×16 lowest frequencies against their median) of the whole picture, of the picture with a uniform border trimmed (pixels within 20 grey levels of the top-left one), ' +
    "and of its centred 95 % and 85 %. A pair's distance (`src/search/near-duplicates.ts`) is the smallest of: whole against whole, trimmed against trimmed, " +
    "and either one's whole picture against the other's crops.",
);
out.push('- `served + embedding`: `served` within a sure distance, or within a wider one while the embeddings agree too.');
out.push('');

// The catalog's own duplicates.
const pixelDuplicates = rows.length - new Set(rows.map((r) => r.pix_sha256)).size;
const ahashGroups = new Map<string, number[]>();
rows.forEach((r, i) => ahashGroups.set(r.ahash!, [...(ahashGroups.get(r.ahash!) ?? []), i]));
const collisions = [...ahashGroups.values()].filter((g) => g.length > 1);
const collisionDistances = collisions.flatMap((g) => g.flatMap((a, i) => g.slice(i + 1).map((b) => servedDistance(a, b))));
out.push('## Duplicates inside the catalog');
out.push('');
out.push(`- Same decoded pixels (\`pix_sha256\`): ${pixelDuplicates} (the catalog's curation already dropped one, \`dropped.csv\`: \`dup_image_of\`).`);
out.push(
  `- Same 8×8 average hash (\`ahash\`): ${collisions.length} values shared by ${collisions.reduce((s, g) => s + g.length, 0)} posters. Looked at one by one: all distinct posters ` +
    `(a dark top over a light bottom, and the like); their \`served\` distances are ${Math.min(...collisionDistances)}–${Math.max(...collisionDistances)}. An average hash is too coarse to find copies with.`,
);
for (const group of KNOWN_DUPLICATES) {
  const at = group.map((id) => catalogIndex.get(id)!);
  const pairs = at.flatMap((a, i) => at.slice(i + 1).map((b) => ({ a, b })));
  out.push(
    `- The same artwork under ${group.length} ids: ${group.map(titled).join(', ')}: MGM's placeholder with only the vertical title strip changed, found by looking at the closest distinct pairs. ` +
      `Pair distances (dHash, \`phash_trim\`, \`served\`, cosine): ${pairs.map(({ a, b }) => `${dDistance(a, b)}, ${Math.min(wholeDistance(a, b), trimmedDistance(a, b))}, ${servedDistance(a, b)}, ${cosine(a, b).toFixed(3)}`).join('; ')}. ` +
      `Left out of the false pairs; the server's rule finds ${pairs.filter(({ a, b }) => servedDistance(a, b) <= NEAR_DUPLICATE.maxDistance).length} of these ${pairs.length} pairs ` +
      '(their title strips differ, as the titles of distinct posters do).',
  );
}
out.push(
  '- Looked at besides: the 24 closest distinct pairs under pHash, under dHash and under the embedding, and the 40 most alike by the embedding among those ' +
    'within 64-bit pHash distance 20: all distinct posters (animated DVD covers by the same studio, white posters with a few small figures, and the like).',
);
out.push('');

out.push('## Each signal at its chosen threshold');
out.push('');
out.push(
  `Recall of true copies on the ${SAMPLE / 2} held-out posters, per transform; then overall on them and on all ${SAMPLE}. False pairs among distinct catalog posters, ` +
    'and among (copy, other poster) pairs. *Wrongly flagged*: the share of catalog posters that have a false partner under the rule, i.e. that the check would flag ' +
    `were each added to the other ${nCatalog - 1}; and the share of copies that a distinct poster matches too. *Target*: recall ≥ ${TARGET.recall} on every transform ` +
    'and false pairs ≤ 0.1 %, on the held-out half.',
);
out.push('');
out.push(`| signal | threshold | ${TRANSFORM_NAMES.map((t) => `\`${t}\``).join(' | ')} | held out | all ${SAMPLE} | false catalog pairs | false copy pairs | wrongly flagged: posters / copies | target |`);
out.push(`| --- | --- | ${TRANSFORM_NAMES.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | --- |`);
const tableRow = (name: string, rule: Rule) => {
  const fp = rule.falsePairs(distinct);
  const otherFalse = TRANSFORM_NAMES.reduce((s, t) => s + rule.falsePairs(others[t]!), 0);
  const otherPairs = TRANSFORM_NAMES.reduce((s, t) => s + others[t]!.pairs, 0);
  const wrong = wronglyFlagged(rule);
  const met = TRANSFORM_NAMES.every((t) => recall(rule, t, 'held-out') >= TARGET.recall) && fp / distinct.pairs <= TARGET.falsePairRate;
  return (
    `| ${name} | ${rule.threshold} | ${TRANSFORM_NAMES.map((t) => recall(rule, t, 'held-out').toFixed(3)).join(' | ')} | ${recall(rule, null, 'held-out').toFixed(3)} | ${recall(rule, null, null).toFixed(3)} | ` +
    `${fp.toLocaleString('en')} (${rate(fp / distinct.pairs)}) | ${rate(otherFalse / otherPairs)} | ${pct(wrong.posters)} / ${pct(wrong.copies)} | ${met ? 'met' : '**missed**'} |`
  );
};
for (const [name, { rule }] of Object.entries(chosen)) out.push(tableRow(`\`${name}\``, rule));
const servedChosen = chosen.served!.rule.threshold === servedRule.threshold;
if (!servedChosen) out.push(tableRow('**the server\'s** `served`', servedRule));
out.push('');

out.push('## Recall at a false-pair budget');
out.push('');
out.push(`The best recall on all ${SAMPLE} posters (the lowest per transform in brackets) of any threshold of each signal whose false catalog pairs stay within the budget.`);
out.push('');
const budgets = [1e-3, 1e-4, 1e-5, 1e-6, 0];
out.push(`| signal | ${budgets.map((b) => (b ? `≤ ${rate(b)} (${Math.floor(b * distinct.pairs).toLocaleString('en')} pairs)` : 'no false pair')).join(' | ')} |`);
out.push(`| --- | ${budgets.map(() => '---:').join(' | ')} |`);
for (const [name, candidates] of Object.entries(candidatesOf)) {
  const cells = budgets.map((budget) => {
    const within = candidates.filter((r) => r.falsePairs(distinct) <= budget * distinct.pairs);
    if (within.length === 0) return '–';
    const best = within.sort((a, b) => recall(b, null, null) - recall(a, null, null))[0]!;
    return `${recall(best, null, null).toFixed(3)} (${Math.min(...TRANSFORM_NAMES.map((t) => recall(best, t, null))).toFixed(3)})`;
  });
  out.push(`| \`${name}\` | ${cells.join(' | ')} |`);
}
out.push('');

const names = (copy: Copy) => copy.near.filter((x) => x.d <= NEAR_DUPLICATE.maxDistance).sort((x, y) => x.d - y.d || x.poster - y.poster)[0]?.poster ?? null;
const named = copies.filter((c) => names(c) === c.source).length;
const namedOther = copies.filter((c) => names(c) !== null && names(c) !== c.source).length;
const servedWrong = wronglyFlagged(servedRule);
out.push('## What the server uses');
out.push('');
out.push(
  `\`NEAR_DUPLICATE\` in \`src/search/near-duplicates.ts\`: \`served\` ${servedRule.threshold} (${servedChosen ? 'the threshold chosen above' : '**not** the threshold chosen above: update it'}). ` +
    `Recall ${recall(servedRule, null, 'held-out').toFixed(3)} held out, ${recall(servedRule, null, null).toFixed(3)} on all ${SAMPLE} ` +
    `(lowest transform: ${TRANSFORM_NAMES.map((t) => [t, recall(servedRule, t, null)] as const).sort((a, b) => a[1] - b[1]).map(([t, r]) => `${t} ${r.toFixed(3)}`)[0]}); ` +
    `${servedRule.falsePairs(distinct).toLocaleString('en')} false catalog pairs; wrongly flagged: ${pct(servedWrong.posters)} of catalog posters, ${pct(servedWrong.copies)} of copies. ` +
    `A check names the nearest catalog poster within the threshold: for ${named} of the ${copies.length} copies that is the source, for ${namedOther} another poster, and ${copies.length - named - namedOther} are not flagged.`,
);
out.push('');
out.push(
  "The rule is the hash alone: the combined rule's best adds no recall the hash cannot have at no false pair (the table above), " +
    'and without the embedding the rule does not change with the model in service, a check needs no forward pass, and a listing reads no vectors.',
);
out.push('');
out.push(
  'The embedding alone cannot do it: the served model was trained for genres, from a random start, with crops and flips but no colour changes, ' +
    'so a recoloured or framed copy can land far from its source (cosine down to ' +
    `${Math.min(...copies.filter((c) => c.transform === 'colour').map((c) => c.toSource.cosine)).toFixed(2)} for \`colour\`, ` +
    `${Math.min(...copies.filter((c) => c.transform === 'border').map((c) => c.toSource.cosine)).toFixed(2)} for \`border\`), while thousands of distinct posters ` +
    '(animated DVD covers, mostly) are within cosine 0.99 of each other. A 64-bit hash separates copies from distinct posters only so far: posters share layouts ' +
    '(a dark top over a light bottom), and at the distance a 90 % crop needs, most posters have some distinct poster as close. Four times the bits, ' +
    'and crops stored beside the whole picture, move the copies and the distinct posters apart.',
);
out.push('');
out.push(`**Around the threshold.** \`served\` at other thresholds: the lowest recall of any transform (all ${SAMPLE} posters), false catalog pairs, catalog posters wrongly flagged, and recall on pictures beyond the set (below).`);
out.push('');
out.push(`| distance ≤ | lowest recall | false catalog pairs | wrongly flagged posters | ${Object.keys(BEYOND).map((b) => `\`${b}\``).join(' | ')} |`);
out.push(`| ---: | ---: | ---: | ---: | ${Object.keys(BEYOND).map(() => '---:').join(' | ')} |`);
for (const t of [48, 56, 60, 64, 66, 68, 72, 76, 80, 88]) {
  const rule = signalRule('served', t);
  const mark = t === NEAR_DUPLICATE.maxDistance ? ' (the server)' : '';
  out.push(
    `| ${t}${mark} | ${Math.min(...TRANSFORM_NAMES.map((x) => recall(rule, x, null))).toFixed(3)} | ${rule.falsePairs(distinct).toLocaleString('en')} | ${pct(wronglyFlagged(rule).posters)} | ` +
      `${Object.keys(BEYOND).map((b) => (beyond[b]!.filter((d) => d <= t).length / SAMPLE).toFixed(3)).join(' | ')} |`,
  );
}
out.push('');
out.push('**Beyond the set.** The stored crops are 95 % and 85 %, so the set\'s 90 % crop is matched between them, not by a crop of its own size. Pictures not in the target set, the same 500 posters, `served` at the server\'s threshold:');
out.push('');
out.push('| transform | recall |');
out.push('| --- | ---: |');
for (const [name, transform] of Object.entries(BEYOND)) {
  out.push(`| \`${name}\`: ${transform.describe} | ${(beyond[name]!.filter((d) => d <= NEAR_DUPLICATE.maxDistance).length / SAMPLE).toFixed(3)} |`);
}
out.push('');
out.push('An off-centre crop is out of reach: neither the whole picture nor a centred crop lines up with it.');
out.push('');

out.push('## Cost');
out.push('');
out.push(
  `- Hashing a picture (decode at most 128 px a side, trim, four DCT hashes), per poster: p50 **${p50(hashMs).toFixed(2)} ms** over all ${n} pictures ` +
    `(p90 ${percentile(Float64Array.from(hashMs).sort(), 0.9).toFixed(2)} ms). Every add pays it, beside its forward pass; ` +
    'a start hashes the posters that have none (a fresh data dir: all of them) once the service is ready, near-duplicate checks answering 503 until it is done.',
);
out.push(
  `- **The duplicate check on an add** (hash the upload, scan the ${nCatalog} catalog hashes): p50 **${p50(checkMs).toFixed(2)} ms**, of which the scan ${p50(scanMs).toFixed(2)} ms ` +
    `(${timed.length} held-out copies, one at a time). The server hashes beside the add's forward pass, so what an add waits for is the scan and whatever of the hash outlasts the forward pass ` +
    '(Server-Timing: `duplicates`).',
);
out.push(`- The scan at a million posters (random hashes, one core): p50 ${p50(millionMs).toFixed(0)} ms, under the catalog's write lock.`);
out.push(
  `- Every pair of the catalog within the threshold (what \`GET /admin/duplicates\` starts from): ${catalogPairs.length.toLocaleString('en')} pairs found in ${(pairsMs / 1000).toFixed(1)} s. ` +
    `All pairs are compared, so this grows with the square of the catalog (about ${((pairsMs / 1000) * (100_000 / nCatalog) ** 2 / 60).toFixed(0)} minutes at 100,000 posters); ` +
    'the server compares them once, at the first listing, then keeps the pairs up to date per add and delete (one scan each).',
);
out.push('');
process.stdout.write(`${out.join('\n')}\n`);
