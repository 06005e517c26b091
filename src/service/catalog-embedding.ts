import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { Decodes } from '../model/decodes.js';
import type { Embedder } from '../model/embedder.js';
import { preprocess } from '../model/preprocess.js';
import { startProgress } from '../progress.js';
import type { EmbeddingStore } from '../state/embeddings.js';
import type { ModelVersion } from '../state/models.js';

const BATCH = 16;

/**
 * Embeds every poster that has no embedding yet for this model version. Each batch is committed
 * as it completes, so an interrupted run resumes where it stopped.
 */
export async function embedCatalog(
  model: ModelVersion,
  embedder: Embedder,
  store: EmbeddingStore,
  dataDir: string,
  maxPixels: number,
  log: Logger,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
  /** The server's decodes (admitted by the decode budget it shares with uploads); none in the CLI. */
  decodes?: Decodes,
): Promise<number> {
  const missing = await store.missingInPages(model);
  if (missing.length === 0) return 0;
  log.info({ version: model.version, posters: missing.length }, 'embedding the catalog');
  const progress = startProgress(log, `embedding ${missing.length} posters`, missing.length);
  let done = 0;
  for (let start = 0; start < missing.length; start += BATCH) {
    signal?.throwIfAborted();
    const batch = missing.slice(start, start + BATCH);
    const tensors = await Promise.all(
      batch.map(async ({ imagePath }) => {
        const bytes = await readFile(join(dataDir, imagePath));
        return (await (decodes ? decodes.preprocess(bytes, model.preprocessing, 'background') : preprocess(bytes, model.preprocessing, maxPixels))).tensor;
      }),
    );
    const vectors = await embedder.embed(tensors);
    await store.putMany(model, batch.map(({ key }, i) => ({ key, vector: vectors[i]! })));
    done += batch.length;
    progress.tick(done);
    onProgress?.(done, missing.length);
  }
  progress.finish();
  return missing.length;
}
