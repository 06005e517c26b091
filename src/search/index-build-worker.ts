// A thread of index-build.ts: builds one variant's vector index from SQLite and writes its
// checkpoint, leaving the server's event loop free for the minutes a large build takes.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { EmbeddingStore } from '../state/embeddings.js';
import type { IndexBuildJob } from './index-build.js';
import { VectorIndex } from './vector-index.js';

const { dbFile, space, dims, scalar, file } = workerData as IndexBuildJob;
const db = new Database(dbFile, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
try {
  parentPort!.postMessage(VectorIndex.writeBuilt(file, new EmbeddingStore(db).source(space, dims), scalar));
} finally {
  db.close();
}
