/**
 * The filtered searches of `bench/million.ts` again, on the data dir it left (its last storage kind's
 * checkpoint), after a change to the search: latency with the SQLite file out of the page cache
 * (evicted with posix_fadvise, as after a restart of the machine or when other files pushed it out)
 * and in it, exactly k, and recall against the exact filtered answer from SQLite's float32 embeddings.
 *
 *   node --import tsx bench/million-filters.ts [dir=/tmp/marquee-million] [scalar=i8] >> bench/results/million.md
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { matches, type SearchFilter } from '../src/search/poster-filters.js';
import { Searcher, type Hit } from '../src/search/searcher.js';
import { VectorIndex, type IndexScalar } from '../src/search/vector-index.js';
import { indexPath } from '../src/service/engine.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqliteEmbeddingStore } from '../src/state/sqlite/embeddings.js';
import { SqliteModelRegistry } from '../src/state/sqlite/models.js';
import { machineInfo } from './lib/machine.js';
import { nowMs, summarise } from './lib/stats.js';

const dataDir = join(process.argv[2] ?? '/tmp/marquee-million', 'data');
const scalar = (process.argv[3] ?? 'i8') as IndexScalar;
const QUERIES = 300;
const K = 8;
const dbFile = join(dataDir, 'marquee.db');
const db = openDb(dbFile);
const store = new SqliteEmbeddingStore(db);
const catalog = new SqliteCatalog(db);
const model = (await new SqliteModelRegistry(db).active())!;
const index = VectorIndex.open(indexPath(dataDir, model), store.source(model, model.dims), { scalar });
if (index.rebuilt) throw new Error(`no checkpoint to search: ${index.rebuilt}`);
const fields = [...catalog.filterFields()];
const searcher = new Searcher(index, (key) => store.get(model, key), fields, (keys) => catalog.getMany(keys));
// Queries: stored vectors of posters spread over the catalog, each excluded from its own answer.
const queries = Array.from({ length: QUERIES }, (_, i) => fields[Math.floor((i + 0.5) * (fields.length / QUERIES))]!.key);

/** Drops the SQLite file's pages from the page cache (clean pages only: the file is checkpointed and not written here). */
function evictSqlite(): void {
  db.pragma('wal_checkpoint(TRUNCATE)');
  const script = `import os\nfd = os.open(${JSON.stringify(dbFile)}, os.O_RDONLY)\nos.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)`;
  execFileSync('python3', ['-c', script]);
}

const out: string[] = [];
const machine = machineInfo();
out.push(`### Filtered searches again: \`node --import tsx bench/million-filters.ts\`, ${machine.date}, the ${scalar} checkpoint, load average ${machine.loadAverageAtStart.toFixed(2)}`, '');
out.push(
  '| filter | matching | SQLite out of the page cache: p50 / **p99** ms | in it: p50 / **p99** ms | exactly k | recall vs exact (float32) |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
);
for (const filter of [{ genre: 'Western' }, { yearFrom: 1900, yearTo: 1903 }] as SearchFilter[]) {
  const matching = fields.filter((f) => matches(f, filter)).map((f) => f.key);
  const queryVectors = queries.map((key) => store.getSync(model, key)!);
  const timed = async () => {
    const out: { hits: Hit[]; ms: number }[] = [];
    for (const [i, key] of queries.entries()) {
      const started = nowMs();
      const hits = await searcher.search(queryVectors[i]!, K, filter, new Set([key]));
      out.push({ hits, ms: nowMs() - started });
    }
    return out;
  };
  evictSqlite();
  const cold = await timed();
  const warm = await timed();
  const vectors = store.getManySync(model, matching);
  let exactK = 0;
  let recall = 0;
  for (const [i, key] of queries.entries()) {
    const query = queryVectors[i]!;
    const { hits } = warm[i]!;
    const truth = new Set(
      matching
        .filter((m) => m !== key)
        .map((m) => ({ m, d: vectors.get(m)!.reduce((sum, x, i) => sum + (x - query[i]!) ** 2, 0) }))
        .sort((a, b) => a.d - b.d)
        .slice(0, K)
        .map((x) => x.m),
    );
    if (hits.length === K && hits.every((h) => matches(h.poster, filter))) exactK++;
    recall += hits.filter((h) => truth.has(h.poster.key)).length / K;
  }
  const [c, w] = [cold, warm].map((run) => summarise(run.map((r) => r.ms)));
  out.push(
    `| ${JSON.stringify(filter)} | ${matching.length} | ${c!.median.toFixed(2)} / **${c!.p99.toFixed(2)}** | ${w!.median.toFixed(2)} / **${w!.p99.toFixed(2)}** | ${exactK}/${QUERIES} | ${(recall / QUERIES).toFixed(3)} |`,
  );
}
out.push('');
process.stdout.write(`${out.join('\n')}\n`);
db.close();
