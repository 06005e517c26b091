import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import {
  CATALOG_EMBEDDINGS_FILE,
  CatalogEmbeddingsError,
  readCatalogEmbeddings,
  readCatalogEmbeddingsHeader,
  type CatalogEmbeddings,
} from '../model/catalog-embeddings-file.js';
import type { Decodes } from '../model/decodes.js';
import type { Embedder } from '../model/embedder.js';
import { preprocess } from '../model/preprocess.js';
import type { EmbeddingStore } from '../state/embeddings.js';
import type { ModelVersion } from '../state/models.js';

/** Posters embedded at start to check a shipped file against the model before any of it is taken. */
export const SHIPPED_SAMPLE = 32;
/** The least cosine between a sampled poster's shipped vector and the model's: below it, the file is not used. */
export const SHIPPED_MIN_COSINE = 0.999;

export interface ShippedAdoption {
  file: string;
  /** Posters that had no embedding of this variant. */
  missing: number;
  /** Posters whose vector was taken from the file (the sampled ones included, stored as embedded here). */
  taken: number;
  /** Posters embedded to check the file. */
  verified: number;
  /** Why the file was not used, when it was not. */
  distrusted: string | null;
}

/**
 * The shipped catalog embeddings for the file this model variant serves (its sha256), looked for
 * in the model directories a start registers from: MARQUEE_BASE_MODEL's (versions `base-…`) and
 * the default model's (`default-…`). A file beside the served model that was made for another
 * file (the model replaced, the file not made again) is named in a warning.
 */
export function shippedEmbeddingsFile(model: ModelVersion, sources: { dir: string | null; kind: string }[], log: Logger): string | null {
  for (const { dir, kind } of sources) {
    if (!dir) continue;
    const file = join(dir, CATALOG_EMBEDDINGS_FILE);
    if (!existsSync(file)) continue;
    const servedFromHere = model.version.startsWith(`${kind}-`);
    try {
      const header = readCatalogEmbeddingsHeader(file);
      if (header.model_sha256 === model.fileSha256) return file;
      if (servedFromHere) {
        log.warn(
          { file, for: header.model_sha256, serving: model.fileSha256 },
          'the shipped catalog embeddings were made for another model file: not used (make them again with `marquee ship-embeddings`)',
        );
      }
    } catch (error) {
      if (servedFromHere) log.warn({ file, err: error }, 'the shipped catalog embeddings cannot be read: not used');
    }
  }
  return null;
}

/**
 * Stores, for the posters this variant has no embedding of yet, the vectors a shipped file holds
 * for their pictures (by pixel hash), after checking the file against the model: a random sample
 * of those posters is embedded here, and if any of its vectors is further than SHIPPED_MIN_COSINE
 * from the shipped one (another model, another machine's arithmetic, a damaged or tampered file),
 * none of the file is taken and the caller embeds every poster. Posters the file does not know
 * (added, or whose picture changed) are left for the caller to embed.
 */
export async function adoptShippedEmbeddings(
  model: ModelVersion,
  embedder: Embedder,
  store: EmbeddingStore,
  file: string,
  dataDir: string,
  maxPixels: number,
  log: Logger,
  onStatus: (status: string) => void = () => {},
  /** The server's decodes (admitted by its decode budget), as the catalog's embedding uses; none in the CLI. */
  decodes?: Decodes,
): Promise<ShippedAdoption> {
  const missing = await store.missing(model);
  const outcome = (taken: number, verified: number, distrusted: string | null): ShippedAdoption => ({ file, missing: missing.length, taken, verified, distrusted });
  const distrust = (why: string, verified = 0): ShippedAdoption => {
    log.warn({ file, why, verified }, `the shipped catalog embeddings are not used (${why}): embedding every poster`);
    return outcome(0, verified, why);
  };
  if (missing.length === 0) return outcome(0, 0, null);
  let shipped: CatalogEmbeddings;
  try {
    shipped = readCatalogEmbeddings(file);
  } catch (error) {
    if (!(error instanceof CatalogEmbeddingsError)) throw error;
    return distrust(error.message);
  }
  if (shipped.header.dims !== model.dims) return distrust(`it holds ${shipped.header.dims}-d vectors; the model's are ${model.dims}-d`);
  const found = missing.flatMap((poster) => {
    const vector = shipped.get(poster.pixelSha256);
    return vector ? [{ ...poster, vector }] : [];
  });
  if (found.length === 0) return outcome(0, 0, null);
  const broken = found.find(({ vector }) => !vector.every(Number.isFinite));
  if (broken) return distrust(`the vector of poster ${broken.key}'s picture is not finite`);
  const sample = randomSample(found, SHIPPED_SAMPLE);
  onStatus(`checking the shipped catalog embeddings: embedding ${sample.length} posters`);
  const fresh = await embedPosters(sample, model, embedder, dataDir, maxPixels, decodes);
  let worst = { cosine: Infinity, key: 0 };
  sample.forEach((poster, i) => {
    const c = cosine(poster.vector, fresh[i]!);
    if (Number.isNaN(c) ? !Number.isNaN(worst.cosine) : c < worst.cosine) worst = { cosine: c, key: poster.key };
  });
  if (!(worst.cosine >= SHIPPED_MIN_COSINE)) {
    return distrust(`poster ${worst.key}'s shipped vector has cosine ${worst.cosine.toFixed(6)} with the model's, under ${SHIPPED_MIN_COSINE}`, sample.length);
  }
  const embeddedHere = new Map(sample.map((poster, i) => [poster.key, fresh[i]!]));
  await store.putMany(
    model,
    found.map(({ key, vector }) => ({ key, vector: embeddedHere.get(key) ?? vector })),
  );
  log.info(
    { file, version: model.version, precision: model.precision, taken: found.length, verified: sample.length, min_cosine: Number(worst.cosine.toFixed(6)) },
    `took ${found.length} catalog embeddings from the shipped file (${sample.length} checked against the model)`,
  );
  return outcome(found.length, sample.length, null);
}

/** Up to `n` of the items, each subset equally likely (a partial Fisher-Yates shuffle). */
function randomSample<T>(items: T[], n: number): T[] {
  const pool = [...items];
  const count = Math.min(n, pool.length);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(Math.random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count);
}

/** Embeds catalog posters as the catalog's embedding does, in batches of 16. */
async function embedPosters(
  posters: { imagePath: string }[],
  model: ModelVersion,
  embedder: Embedder,
  dataDir: string,
  maxPixels: number,
  decodes: Decodes | undefined,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let start = 0; start < posters.length; start += 16) {
    const tensors = await Promise.all(
      posters.slice(start, start + 16).map(async ({ imagePath }) => {
        const bytes = await readFile(join(dataDir, imagePath));
        return (await (decodes ? decodes.preprocess(bytes, model.preprocessing, 'background') : preprocess(bytes, model.preprocessing, maxPixels))).tensor;
      }),
    );
    out.push(...(await embedder.embed(tensors)));
  }
  return out;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}
