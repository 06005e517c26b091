import type { Embedder } from '../model/embedder.js';
import type { ModelVersion } from '../state/models.js';
import { embedCatalog } from './catalog-embedding.js';
import { Engine, loadEmbedder } from './engine.js';
import type { Runtime } from './runtime.js';
import type { Services } from './startup.js';

/**
 * Puts a model version in service: every poster embedded, its index built, recorded as active in
 * SQLite, swapped in. The bulk of the embedding runs while the catalog keeps changing; the last
 * step runs under the runtime's write lock (Runtime.exclusive), embedding what writes added
 * meanwhile and loading the engine from SQLite as it is then, so the engine swapped in holds every
 * poster present at the swap and none deleted before it. Requests in flight finish on the engine
 * they started with. Without a runtime (the CLI) the activation is only recorded.
 */
export async function bringIntoService(
  model: ModelVersion,
  services: Services,
  runtime: Runtime | null,
  options: { embedder?: Embedder; signal?: AbortSignal; onProgress?: (done: number, total: number) => void; beforeSwap?: () => Promise<void> } = {},
): Promise<Engine> {
  const { config, embeddings, log } = services;
  const embedder = options.embedder ?? (await loadEmbedder(model, services));
  const embedMissing = () =>
    embedCatalog(model, embedder, embeddings, config.dataDir, config.maxPixels, log, options.onProgress, options.signal, services.decodes);
  const swap = async () => {
    await embedMissing();
    const engine = await Engine.load(model, services, embedder);
    if (options.signal?.aborted) {
      await engine.dispose();
      options.signal.throwIfAborted();
    }
    await options.beforeSwap?.();
    await services.models.activate(model.version, new Date().toISOString());
    services.metrics.setActiveModel(model.version);
    if (runtime) runtime.swap(engine);
    else await engine.dispose();
    log.info({ version: model.version }, 'model activated');
    return engine;
  };
  try {
    await embedMissing();
    options.signal?.throwIfAborted();
    // Several servers: each loads the candidate before it is made active, and switches at once after.
    await services.fleet?.gather(model, options.signal);
    return await (runtime ? runtime.exclusive(swap) : swap());
  } catch (error) {
    await embedder.release();
    throw error;
  } finally {
    await services.fleet?.withdraw(model);
  }
}
