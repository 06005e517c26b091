import { embedCatalog } from './catalog-embedding.js';
import { Engine, loadEmbedder } from './engine.js';
import type { Runtime } from './runtime.js';
import type { Services } from './startup.js';
import type { ModelVersion } from '../state/models.js';

/** Everything a model version needs to serve: every poster embedded, its index built and mapped. */
export async function prepareEngine(
  model: ModelVersion,
  services: Services,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<Engine> {
  const { config, embeddings, log } = services;
  const embedder = await loadEmbedder(model, services);
  try {
    await embedCatalog(model, embedder, embeddings, config.dataDir, config.maxPixels, log, onProgress, signal);
    signal?.throwIfAborted();
    return await Engine.load(model, services, embedder);
  } catch (error) {
    await embedder.release();
    throw error;
  }
}

/**
 * Puts an engine in service: recorded as active in SQLite, then swapped in. Requests in flight
 * finish on the engine they started with; new requests get this one.
 */
export function putInService(engine: Engine, services: Services, runtime: Runtime | null): void {
  services.models.activate(engine.model.version, new Date().toISOString());
  services.metrics.setActiveModel(engine.model.version);
  if (runtime) runtime.swap(engine);
  else void engine.dispose();
  services.log.info({ version: engine.model.version }, 'model activated');
}
