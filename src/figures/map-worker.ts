// The embedding map's computation, on a thread of its own: it reads the posters' embeddings from
// SQLite through a read-only connection (WAL lets it read beside the server's writes), samples
// them past the cap, and runs UMAP (tens of seconds of pure JavaScript), while the server's event
// loop keeps answering.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { EmbeddingStore } from '../state/embeddings.js';
import { layoutMap } from './map-layout.js';
import type { LayoutJob, LayoutResult } from './map-cache.js';
import { sample, seededRandom } from './random.js';

const { dbFile, space, dims, params, cap } = workerData as LayoutJob;
const db = new Database(dbFile, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
try {
  const embedded = db
    .prepare('SELECT p.key FROM posters p JOIN embeddings e ON e.poster_key = p.key AND e.model_version = ? AND e.precision = ? ORDER BY p.key')
    .pluck()
    .all(space.version, space.precision) as number[];
  const total = (db.prepare('SELECT count(*) FROM posters').pluck().get() as number) ?? 0;
  const keys = embedded.length > cap ? sample(embedded, cap, seededRandom(params.seed)).sort((a, b) => a - b) : embedded;
  const store = new EmbeddingStore(db);
  const data = new Float32Array(keys.length * dims);
  for (let start = 0; start < keys.length; start += 1000) {
    const chunk = keys.slice(start, start + 1000);
    const vectors = store.getMany(space, chunk);
    chunk.forEach((key, i) => data.set(vectors.get(key)!, (start + i) * dims));
  }
  const coords = layoutMap(data, dims, params);
  parentPort!.postMessage({ keys, coords, posters: total, unembedded: total - embedded.length } satisfies LayoutResult, [coords.buffer as ArrayBuffer]);
} finally {
  db.close();
}
