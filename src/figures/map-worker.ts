// The embedding map's computation, on a thread of its own: it reads the posters' embeddings from
// SQLite through a read-only connection (WAL lets it read beside the server's writes), samples
// them past the cap, and runs UMAP (tens of seconds of pure JavaScript), while the server's event
// loop keeps answering.
import { parentPort, workerData } from 'node:worker_threads';
import { State } from '../state/state.js';
import { layoutMap } from './map-layout.js';
import type { LayoutJob, LayoutResult } from './map-cache.js';
import { sample, seededRandom } from './random.js';

const { dbFile, space, dims, params, cap } = workerData as LayoutJob;
const state = State.reader(dbFile);
try {
  const embedded = await state.embeddings.embeddedKeys(space);
  const total = await state.catalog.count();
  const keys = embedded.length > cap ? sample(embedded, cap, seededRandom(params.seed)).sort((a, b) => a - b) : embedded;
  const data = new Float32Array(keys.length * dims);
  for (let start = 0; start < keys.length; start += 1000) {
    const chunk = keys.slice(start, start + 1000);
    const vectors = await state.embeddings.getMany(space, chunk);
    chunk.forEach((key, i) => data.set(vectors.get(key)!, (start + i) * dims));
  }
  const coords = layoutMap(data, dims, params);
  parentPort!.postMessage({ keys, coords, posters: total, unembedded: total - embedded.length } satisfies LayoutResult, [coords.buffer as ArrayBuffer]);
} finally {
  state.close();
}
