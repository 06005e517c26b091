/**
 * A catalog of a million posters (issue 8, section 3):
 *
 *   npm run build && node --import tsx bench/million.ts [posters=1000000] [dir] > bench/results/million.md
 *
 * Synthetic posters in the real schema: `posters` rows written by the catalog's own upsert, and
 * 512-d unit embeddings in two levels of clusters (1,000 clusters of 20 sub-clusters; a poster is
 * its cluster's centre + 0.6 × its sub-cluster's direction + 0.35 × noise, normalised), so that
 * nearest neighbours and recall mean something. Genres: a primary genre tied to the cluster (18
 * of them, about 5.6 % each), a second one at random for half the posters, and "Western" for 1 %
 * at random; years skewed to recent decades, so 1900–1903 holds about 0.1 %.
 *
 * For each of usearch's storage kinds (f32, f16, i8): the real server (`marquee serve`, the shipped
 * default model) builds the index at its first start; a second start, with the index on disk, is
 * timed to ready and its RSS read; then, in this process, the same checkpoint is opened and
 * searched: k=8 latency and queries/s, recall@10 against exact search, and filtered searches
 * (exactly k results? recall against the exact filtered answer). Finally `marquee import` is run
 * on a catalog of real poster files to measure its rows/s. MILLION_CATALOG_ONLY=1 stops once the
 * catalog is written, leaving the data dir for the benchmarks that serve it (bench/recommend.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import usearch from 'usearch';
import { Searcher, type SearchFilter } from '../src/search/searcher.js';
import { indexPath } from '../src/service/engine.js';
import { VectorIndex, type IndexScalar } from '../src/search/vector-index.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import { SqliteModelRegistry } from '../src/state/sqlite/models.js';
import { ROOT } from './lib/context.js';
import { machineInfo } from './lib/machine.js';
import { startServer } from './lib/server.js';
import { CLUSTERS, DIMS, RARE_GENRE, SUBCLUSTERS, synthesise } from './lib/synthetic.js';
import { nowMs, summarise, type Summary } from './lib/stats.js';
import { linkImages, sharedRows } from '../test/support/catalog.js';

const N = Number(process.argv[2] ?? 1_000_000);
const DIR = process.argv[3] ?? '/tmp/marquee-million';
const K = 8;
const RECALL_K = 10;
const QUERIES = 2000;
const RECALL_QUERIES = 1000;
const FILTERED_QUERIES = 300;
const IMPORT_ROWS = Number(process.env.MILLION_IMPORT_ROWS ?? 20_000);
const EXPANSIONS = (process.env.MILLION_EXPANSIONS ?? '64,128,256').split(',').map(Number);
const SCALARS = (process.env.MILLION_SCALARS ?? 'f32,f16,i8').split(',') as IndexScalar[];

const log = (line: string) => process.stderr.write(`[million ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const mib = (bytes: number) => bytes / 2 ** 20;

function rssOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

function dirSize(dir: string, match: (name: string) => boolean): number {
  return readdirSync(dir).filter(match).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

/** Exact k nearest among the given rows of the synthetic matrix (float32, by dot product of unit vectors). */
function exactAmong(vectors: Float32Array, rows: ArrayLike<number>, query: Float32Array, k: number): number[] {
  const best: { row: number; dot: number }[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    let dot = 0;
    const base = row * DIMS;
    for (let d = 0; d < DIMS; d++) dot += vectors[base + d]! * query[d]!;
    if (best.length === k && dot <= best[k - 1]!.dot) continue;
    best.push({ row, dot });
    best.sort((a, b) => b.dot - a.dot);
    if (best.length > k) best.pop();
  }
  return best.map((b) => b.row);
}

const fmt = (s: Summary) => `p50 ${s.median.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`;

// ---------------------------------------------------------------------------------------------
const machine = machineInfo();
log(`${N} posters in ${DIR}; storage kinds ${SCALARS.join(', ')}`);
rmSync(DIR, { recursive: true, force: true });
mkdirSync(DIR, { recursive: true });
const dataDir = join(DIR, 'data');
const serverEnv = (scalar: IndexScalar): Record<string, string> => ({
  MARQUEE_DATA_DIR: dataDir,
  MARQUEE_CATALOG: '',
  MARQUEE_BASE_WEIGHTS: 'none',
  MARQUEE_INDEX_SCALAR: scalar,
  LOG_LEVEL: 'info',
  LD_PRELOAD: process.env.LD_PRELOAD ?? '',
});

// 1. An empty service registers and activates the shipped default model.
{
  const server = await startServer(ROOT, serverEnv('f32'));
  await server.stop();
}

// 2. The catalog: posters through Catalog.upsert, embeddings through EmbeddingStore.putMany.
log('synthesising vectors');
let t0 = nowMs();
const data = synthesise(N);
log(`synthesised in ${((nowMs() - t0) / 1000).toFixed(1)} s`);
const db = openDb(join(dataDir, 'marquee.db'));
const catalog = new SqliteCatalog(db);
const embeddings = new SqliteEmbeddingStore(db);
const model = (await new SqliteModelRegistry(db).active())!;
if (model.dims !== DIMS) throw new Error(`the default model has ${model.dims} dims`);
const keys = new Int32Array(N);
t0 = nowMs();
const BATCH = 10_000;
const now = new Date().toISOString();
for (let start = 0; start < N; start += BATCH) {
  db.transaction(() => {
    for (let i = start; i < Math.min(N, start + BATCH); i++) {
      const id = `m${String(i).padStart(7, '0')}`;
      const genres = data.genres[i]!;
      keys[i] = catalog.upsertSync(
        {
          id, title: `Synthetic film ${i}`, year: data.years[i]!, releaseDate: `${data.years[i]}-06-01`, genres, singleGenre: [...genres].sort()[0]!,
          split: i % 10 === 0 ? 'test' : i % 10 === 1 ? 'val' : 'train', imagePath: `images/${id}.jpg`,
          imageSha256: id.padEnd(64, '0'), pixelSha256: id.padEnd(64, '1'), width: 342, height: 513,
        },
        now,
      ).key; // prettier-ignore
    }
  })();
  if (start % 100_000 === 0) log(`posters ${start}/${N}`);
}
const postersSeconds = (nowMs() - t0) / 1000;
t0 = nowMs();
for (let start = 0; start < N; start += BATCH) {
  const rows = [];
  for (let i = start; i < Math.min(N, start + BATCH); i++) rows.push({ key: keys[i]!, vector: data.vectors.subarray(i * DIMS, (i + 1) * DIMS) });
  embeddings.putManySync(model, rows);
}
const embeddingsSeconds = (nowMs() - t0) / 1000;
db.pragma('wal_checkpoint(TRUNCATE)');
const sqliteBytes = statSync(join(dataDir, 'marquee.db')).size;
db.close();
log(`catalog written: posters ${postersSeconds.toFixed(0)} s, embeddings ${embeddingsSeconds.toFixed(0)} s, SQLite ${mib(sqliteBytes).toFixed(0)} MiB`);
if (process.env.MILLION_CATALOG_ONLY) {
  // The data dir alone, for the benchmarks that serve it (bench/recommend.ts); the server builds its index at first start.
  log(`catalog only: ${dataDir}`);
  process.exit(0);
}

const rowOfKey = new Map<number, number>();
keys.forEach((key, row) => rowOfKey.set(key, row));
const queries = Array.from({ length: Math.max(QUERIES, RECALL_QUERIES) }, () => data.query());

interface KindResult {
  scalar: IndexScalar;
  buildSeconds: number;
  firstReadySeconds: number;
  readySeconds: number;
  rssAfterReady: number;
  rssAfterQueries: number;
  peakRss: number;
  indexBytes: number;
  rowsBytes: number;
  httpById: Summary;
  byExpansion: { expansion: number; latency: Summary; queriesPerSecond: number; queriesPerSecond2: number; recall: number }[];
  filtered: { name: string; share: number; latency: Summary; exactK: number; recall: number; queries: number }[];
}
const results: KindResult[] = [];

const filters: { name: string; filter: SearchFilter; accept: (row: number) => boolean }[] = [
  { name: `genre "${RARE_GENRE}" (1 %)`, filter: { genre: RARE_GENRE }, accept: (row) => data.genres[row]!.includes(RARE_GENRE) },
  { name: 'year 1900–1903 (0.1 %)', filter: { yearFrom: 1900, yearTo: 1903 }, accept: (row) => data.years[row]! <= 1903 },
  { name: 'genre "Horror" (about 8 %: the graph, over-fetching)', filter: { genre: 'Horror' }, accept: (row) => data.genres[row]!.includes('Horror') },
];
const filterRows = filters.map((f) => {
  const rows: number[] = [];
  for (let row = 0; row < N; row++) if (f.accept(row)) rows.push(row);
  return Int32Array.from(rows);
});

for (const scalar of SCALARS) {
  log(`${scalar}: first start (builds the index)`);
  rmSync(join(dataDir, 'indexes'), { recursive: true, force: true });
  const first = await startServer(ROOT, serverEnv(scalar), 3_600_000);
  const readyLine = first.logs().split('\n').find((l) => l.includes('"vector index ready"'));
  const buildSeconds = readyLine ? (JSON.parse(readyLine) as { ms: number }).ms / 1000 : Number.NaN;
  const firstReadySeconds = first.readySeconds;
  await first.stop();
  const indexes = join(dataDir, 'indexes');
  const indexBytes = dirSize(indexes, (n) => n.endsWith('.usearch'));
  const rowsBytes = dirSize(indexes, (n) => n.endsWith('.rows'));

  log(`${scalar}: second start (the index on disk)`);
  const server = await startServer(ROOT, serverEnv(scalar), 600_000);
  const rssAfterReady = rssOf(server.pid).rss;
  const byId: number[] = [];
  for (let q = 0; q < 500; q++) {
    const id = `m${String(Math.floor((q * 7919) % N)).padStart(7, '0')}`;
    const started = nowMs();
    const response = await fetch(`${server.url}/posters/${id}/similar?k=${K}`);
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`GET /posters/${id}/similar: ${response.status}`);
    byId.push(nowMs() - started);
  }
  const { rss: rssAfterQueries, peak: peakRss } = rssOf(server.pid);
  const readySeconds = server.readySeconds;
  await server.stop();

  log(`${scalar}: in-process search`);
  const inProcessDb = openDb(join(dataDir, 'marquee.db'));
  const store = new SqliteEmbeddingStore(inProcessDb);
  const index = VectorIndex.open(indexPath(dataDir, model), store.source(model, DIMS), { scalar });
  if (index.rebuilt) throw new Error(`the checkpoint was rebuilt: ${index.rebuilt}`);
  const inProcessCatalog = new SqliteCatalog(inProcessDb);
  const searcher = new Searcher(index, (key) => store.get(model, key), inProcessCatalog.filterFields(), (keys) => inProcessCatalog.getMany(keys));

  // Exact answers once; then, at each search expansion, recall and speed.
  const dataset = data.vectors;
  const exact = usearch.exactSearch(dataset, Float32Array.from(queries.slice(0, RECALL_QUERIES).flatMap((q) => [...q])), DIMS, RECALL_K, usearch.MetricKind.IP, 2) as InstanceType<typeof usearch.BatchMatches>;
  const byExpansion: KindResult['byExpansion'] = [];
  for (const expansion of EXPANSIONS) {
    index.expansion = expansion;
    for (const q of queries.slice(0, 100)) await searcher.search(q, K);
    const samples: number[] = [];
    const began = nowMs();
    for (const q of queries.slice(0, QUERIES)) {
      const started = nowMs();
      await searcher.search(q, K);
      samples.push(nowMs() - started);
    }
    const queriesPerSecond = QUERIES / ((nowMs() - began) / 1000);
    const batchStarted = nowMs();
    index.searchMany(queries.slice(0, QUERIES), K, 2);
    const queriesPerSecond2 = QUERIES / ((nowMs() - batchStarted) / 1000);
    let recallSum = 0;
    for (let q = 0; q < RECALL_QUERIES; q++) {
      const truth = new Set<number>();
      for (let i = 0; i < RECALL_K; i++) truth.add(keys[Number(exact.keys[q * RECALL_K + i])]!);
      recallSum += (await searcher.search(queries[q]!, RECALL_K)).filter((h) => truth.has(h.poster.key)).length / RECALL_K;
    }
    byExpansion.push({ expansion, latency: summarise(samples), queriesPerSecond, queriesPerSecond2, recall: recallSum / RECALL_QUERIES });
    log(`${scalar} expansion ${expansion}: ${fmt(summarise(samples))}, ${queriesPerSecond.toFixed(0)} q/s (1 thread), ${queriesPerSecond2.toFixed(0)} q/s (2 threads), recall@10 ${(recallSum / RECALL_QUERIES).toFixed(4)}`);
  }
  index.expansion = EXPANSIONS[0]!;

  const filtered = [];
  for (const [which, f] of filters.entries()) filtered.push(await (async () => {
    const rows = filterRows[which]!;
    const times: number[] = [];
    let exactK = 0;
    let recall = 0;
    for (const q of queries.slice(0, FILTERED_QUERIES)) {
      const started = nowMs();
      const hits = await searcher.search(q, K, f.filter);
      times.push(nowMs() - started);
      if (hits.length === K && hits.every((h) => f.accept(rowOfKey.get(h.poster.key)!))) exactK++;
      const truth = new Set(exactAmong(dataset, rows, q, K).map((row) => keys[row]!));
      recall += hits.filter((h) => truth.has(h.poster.key)).length / K;
    }
    return { name: f.name, share: rows.length / N, latency: summarise(times), exactK, recall: recall / FILTERED_QUERIES, queries: FILTERED_QUERIES };
  })());
  inProcessDb.close();

  const result: KindResult = {
    scalar, buildSeconds, firstReadySeconds, readySeconds, rssAfterReady, rssAfterQueries, peakRss, indexBytes, rowsBytes,
    httpById: summarise(byId), byExpansion, filtered,
  }; // prettier-ignore
  results.push(result);
  log(
    `${scalar}: build ${buildSeconds.toFixed(0)} s, ready ${readySeconds.toFixed(1)} s, RSS ${mib(rssAfterQueries).toFixed(0)} MiB`,
  );
  for (const f of filtered) log(`  ${f.name}: ${fmt(f.latency)}, exactly k ${f.exactK}/${f.queries}, recall ${f.recall.toFixed(3)}`);
}

// 3. `marquee import` of real poster files, for its rows/s.
log(`import: ${IMPORT_ROWS} rows`);
const importDir = join(DIR, 'import-catalog');
mkdirSync(importDir, { recursive: true });
const real = sharedRows();
linkImages(importDir, real.map((row) => row.file));
const header = 'id,title,year,genres,split,file';
const lines = Array.from({ length: IMPORT_ROWS }, (_, i) => {
  const row = real[i % real.length]!;
  return `i${i},Import ${i},${1950 + (i % 70)},${row.genres},${row.split},${row.file}`;
});
writeFileSync(join(importDir, 'movies.csv'), `${header}\n${lines.join('\n')}\n`);
const importData = join(DIR, 'import-data');
t0 = nowMs();
const imported = spawnSync(process.execPath, [join(ROOT, 'bin', 'marquee.js'), 'import', importDir], {
  env: { ...process.env, MARQUEE_DATA_DIR: importData, LOG_LEVEL: 'warn' },
  encoding: 'utf8',
});
const importSeconds = (nowMs() - t0) / 1000;
if (imported.status !== 0) throw new Error(`marquee import failed: ${imported.stderr}`);
const importReport = JSON.parse(imported.stdout.trim().split('\n').pop()!) as { added: number };
const importDbBytes = statSync(join(importData, 'marquee.db')).size;
const du = (dir: string) => Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);
const importImagesBytes = du(join(importData, 'images'));

// ---------------------------------------------------------------------------------------------
const out: string[] = [];
const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
out.push('# A million posters');
out.push('');
out.push(
  `${machine.date}, ${machine.cpuModel} (${machine.cores} cores, ${machine.totalMemoryGiB.toFixed(0)} GiB), Node ${machine.node}, usearch ${machine.usearch}; ` +
    `\`node --import tsx bench/million.ts ${N}\`. Load average at the start: ${machine.loadAverageAtStart.toFixed(2)}.`,
);
out.push('');
out.push(
  `${N.toLocaleString('en')} synthetic posters × ${DIMS} dims (${CLUSTERS} clusters × ${SUBCLUSTERS} sub-clusters, see the bench's header), in the real schema. ` +
    `HNSW connectivity 16, expansion_add 128, search expansion as given per row (the server: MARQUEE_INDEX_EXPANSION, default 64); k=${K}. Queries are fresh vectors from the same distribution, never in the catalog.`,
);
out.push('');
out.push('## The catalog in SQLite');
out.push('');
out.push(`- ${N.toLocaleString('en')} posters written through \`Catalog.upsert\` in ${postersSeconds.toFixed(0)} s (**${(N / postersSeconds).toFixed(0)} rows/s**), their embeddings through \`EmbeddingStore.putMany\` in ${embeddingsSeconds.toFixed(0)} s (${(N / embeddingsSeconds).toFixed(0)} rows/s).`);
out.push(`- SQLite file: **${mib(sqliteBytes).toFixed(0)} MiB** (${(sqliteBytes / N).toFixed(0)} bytes per poster, the float32 embedding's 2,048 included).`);
out.push(
  `- \`marquee import\` of a ${IMPORT_ROWS.toLocaleString('en')}-row catalog of real poster files (each decoded, hashed and stored): ${importReport.added} added in ${importSeconds.toFixed(0)} s, ` +
    `**${(importReport.added / importSeconds).toFixed(0)} rows/s** (a million rows: about ${((1e6 / (importReport.added / importSeconds)) / 60).toFixed(0)} min); ` +
    `its SQLite ${mib(importDbBytes).toFixed(1)} MiB, images ${mib(importImagesBytes).toFixed(0)} MiB.`,
);
out.push('');
out.push('## Index, start-up and search, by storage kind');
out.push('');
out.push('| | ' + results.map((r) => r.scalar).join(' | ') + ' | target |');
out.push('| --- | ' + results.map(() => '---:').join(' | ') + ' | --- |');
const row = (label: string, cells: string[], target = '') => out.push(`| ${label} | ${cells.join(' | ')} | ${target} |`);
row('index build (first start, s)', results.map((r) => r.buildSeconds.toFixed(0)));
row('first start to ready (s)', results.map((r) => r.firstReadySeconds.toFixed(0)));
row('index file / int8 rows file (MiB)', results.map((r) => `${mib(r.indexBytes).toFixed(0)} / ${mib(r.rowsBytes).toFixed(0)}`));
row('**start-up to ready, index on disk (s)**', results.map((r) => `**${r.readySeconds.toFixed(1)}**`), '≤ 30');
row('**RSS of the server after ready / after 500 queries (MiB)**', results.map((r) => `${mib(r.rssAfterReady).toFixed(0)} / **${mib(r.rssAfterQueries).toFixed(0)}**`), '≤ 3,072');
row('peak RSS of that start (MiB)', results.map((r) => mib(r.peakRss).toFixed(0)));
row('HTTP GET /posters/{id}/similar, c=1', results.map((r) => fmt(r.httpById)));
for (const [i, expansion] of EXPANSIONS.entries()) {
  const at = (r: KindResult) => r.byExpansion[i]!;
  row(`expansion ${expansion}: Searcher.search k=8, one thread`, results.map((r) => fmt(at(r).latency)));
  row(`expansion ${expansion}: queries/s, one thread / **2 threads** (usearch batch search)`, results.map((r) => `${at(r).queriesPerSecond.toFixed(0)} / **${at(r).queriesPerSecond2.toFixed(0)}**`), '≥ 2,000');
  row(`expansion ${expansion}: **recall@10** vs exact (${RECALL_QUERIES} queries)`, results.map((r) => `**${at(r).recall.toFixed(4)}**`), '≥ 0.98');
}
for (let f = 0; f < filters.length; f++) {
  const share = results[0]!.filtered[f]!.share;
  row(`filter ${filters[f]!.name}, ${pct(share)}: p50 / **p99** ms`, results.map((r) => `${r.filtered[f]!.latency.median.toFixed(2)} / **${r.filtered[f]!.latency.p99.toFixed(2)}**`), '≤ 25');
  row(`  exactly k matching / recall vs exact filtered`, results.map((r) => `${r.filtered[f]!.exactK}/${r.filtered[f]!.queries} / ${r.filtered[f]!.recall.toFixed(3)}`), 'all');
}
out.push('');
process.stdout.write(`${out.join('\n')}\n`);
writeFileSync(join(DIR, 'results.json'), JSON.stringify({ machine, N, postersSeconds, embeddingsSeconds, sqliteBytes, importSeconds, importReport, results }, null, 2));
