// A thread of index-build.ts: builds one variant's vector index from SQLite or a snapshot's rows
// and writes its checkpoint, leaving the server's event loop free for the minutes a large build takes.
import { parentPort, workerData } from 'node:worker_threads';
import { RowsSource } from '../state/embedding-snapshot.js';
import { State } from '../state/state.js';
import type { IndexBuildJob } from './index-build.js';
import { VectorIndex } from './vector-index.js';

const { reader, space, dims, scalar, file } = workerData as IndexBuildJob;
if ('rows' in reader) {
  parentPort!.postMessage(VectorIndex.writeBuilt(file, new RowsSource(reader.rows, reader.lastChange), scalar));
} else {
  const state = State.reader(reader.dbFile);
  try {
    parentPort!.postMessage(VectorIndex.writeBuilt(file, state.embeddings.source(space, dims), scalar));
  } finally {
    await state.close();
  }
}
