// A thread of index-build.ts: builds one variant's vector index from SQLite and writes its
// checkpoint, leaving the server's event loop free for the minutes a large build takes.
import { parentPort, workerData } from 'node:worker_threads';
import { State } from '../state/state.js';
import type { IndexBuildJob } from './index-build.js';
import { VectorIndex } from './vector-index.js';

const { dbFile, space, dims, scalar, file } = workerData as IndexBuildJob;
const state = State.reader(dbFile);
try {
  parentPort!.postMessage(VectorIndex.writeBuilt(file, state.embeddings.source(space, dims), scalar));
} finally {
  state.close();
}
