import { once } from 'node:events';
import type { EmbeddingReader, EmbeddingSpace } from '../state/embeddings.js';
import { startWorker } from '../worker-thread.js';
import type { BuildCheckpoint, IndexScalar } from './vector-index.js';

/** What a build thread needs to read one variant's embeddings itself. */
export interface IndexBuildJob {
  reader: EmbeddingReader;
  space: EmbeddingSpace;
  dims: number;
  scalar: IndexScalar;
  file: string;
}

/**
 * Builds a variant's index checkpoint on a worker thread, which reads SQLite through a read-only
 * connection of its own (WAL lets it read beside the server's writes) or the rows a snapshot read,
 * shared, not copied: usearch's build holds the thread it runs on for minutes at a million posters,
 * and the event loop must keep serving.
 */
export function buildOnThread(reader: EmbeddingReader, space: EmbeddingSpace, dims: number): BuildCheckpoint {
  return async (file, scalar) => {
    const worker = startWorker(import.meta.url, 'index-build-worker', { workerData: { reader, space, dims, scalar, file } satisfies IndexBuildJob });
    try {
      await Promise.race([
        once(worker, 'message'),
        once(worker, 'error').then(([error]) => Promise.reject(error)),
        once(worker, 'exit').then(([code]) => Promise.reject(new Error(`the index build thread stopped (exit ${code})`))),
      ]);
    } finally {
      await worker.terminate();
    }
  };
}
