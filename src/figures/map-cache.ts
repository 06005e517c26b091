import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import type { Catalog, Poster } from '../state/catalog.js';
import type { EmbeddingStore } from '../state/embeddings.js';
import { writeAtomically } from '../state/files.js';
import type { ModelVersion } from '../state/models.js';
import { MAP_PARAMS, type MapParams } from './map-layout.js';

export const MAP_FORMAT = 'marquee-map/1';

export interface MapPoint {
  poster: Poster;
  /** In [0, 1], left to right. */
  x: number;
  /** In [0, 1], bottom to top. */
  y: number;
}

export interface CatalogMap {
  modelVersion: string;
  params: MapParams;
  points: MapPoint[];
  /** Read from the cache file rather than computed now. */
  cached: boolean;
}

/** The cache file: coordinates by poster key, valid while the fingerprint matches. */
interface MapFile {
  format: typeof MAP_FORMAT;
  model_version: string;
  params: MapParams;
  fingerprint: string;
  created_at: string;
  points: { key: number; id: string; x: number; y: number }[];
}

export function mapPath(dataDir: string, version: string): string {
  return join(dataDir, 'maps', `${version}.json`);
}

/** What the coordinates depend on: the version, the UMAP settings and exactly which pictures. */
function fingerprint(version: string, params: MapParams, posters: Poster[]): string {
  const hash = createHash('sha256').update(`${version}\n${JSON.stringify(params)}\n`);
  for (const poster of posters) hash.update(`${poster.key}:${poster.pixelSha256}\n`);
  return hash.digest('hex');
}

// Compiled, this module is dist/figures/map-cache.js beside map-worker.js; under tsx (tests) it is
// the .ts source, and the worker needs tsx's loader too (as in model/embedder.ts).
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER = new URL(FROM_SOURCE ? './map-worker.ts' : './map-worker.js', import.meta.url);

async function layoutOnWorker(data: Float32Array, dims: number, params: MapParams): Promise<Float32Array> {
  const workerData = { data, dims, params };
  const worker = FROM_SOURCE
    ? new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER.href)}); })`, {
        eval: true,
        workerData,
      })
    : new Worker(WORKER, { workerData });
  try {
    const [coords] = (await Promise.race([once(worker, 'message'), once(worker, 'error').then(([error]) => Promise.reject(error))])) as [Float32Array];
    return coords;
  } finally {
    await worker.terminate();
  }
}

/**
 * The 2-D embedding map of the catalog under a model version: read from the data dir's cache
 * (maps/<version>.json) while it matches the catalog's pictures, otherwise computed with UMAP on
 * a worker thread and cached. Every catalog poster must already have an embedding for the version.
 */
export class CatalogMaps {
  /** One computation per version at a time; later requests share it. */
  private readonly pending = new Map<string, Promise<CatalogMap>>();
  /** The last map of each version with the catalog state (Catalog.fingerprint) it was made for. */
  private readonly recent = new Map<string, { catalog: string; map: CatalogMap }>();

  constructor(
    private readonly deps: { dataDir: string; catalog: Catalog; embeddings: EmbeddingStore; log: Logger },
    private readonly params: MapParams = MAP_PARAMS,
  ) {}

  get(model: ModelVersion): Promise<CatalogMap> {
    // The catalog's state, not its size: a poster re-pictured or re-labelled, or one added as another goes, changes it.
    const catalog = this.deps.catalog.fingerprint();
    const recent = this.recent.get(model.version);
    if (recent && recent.catalog === catalog) return Promise.resolve(recent.map);
    let map = this.pending.get(model.version);
    if (!map) {
      map = this.load(model)
        .then((loaded) => {
          this.recent.set(model.version, { catalog, map: loaded });
          return loaded;
        })
        .finally(() => this.pending.delete(model.version));
      this.pending.set(model.version, map);
    }
    return map;
  }

  private async load(model: ModelVersion): Promise<CatalogMap> {
    const posters = this.deps.catalog.all();
    const print = fingerprint(model.version, this.params, posters);
    const file = mapPath(this.deps.dataDir, model.version);
    const cached = readMapFile(file);
    if (cached?.fingerprint === print) return this.toMap(model.version, cached, posters, true);

    const set = this.deps.embeddings.load(model, model.dims);
    const rows = new Map<number, number>();
    set.keys.forEach((key, i) => rows.set(Number(key), i));
    const data = new Float32Array(posters.length * model.dims);
    posters.forEach((poster, i) => {
      const row = rows.get(poster.key);
      if (row === undefined) throw new Error(`poster ${poster.id} has no embedding for ${model.version}: embed the catalog first`);
      data.set(set.vectors.subarray(row * model.dims, (row + 1) * model.dims), i * model.dims);
    });
    const started = performance.now();
    this.deps.log.info({ version: model.version, posters: posters.length }, 'computing the embedding map (UMAP)');
    const coords = await layoutOnWorker(data, model.dims, this.params);
    const ms = Math.round(performance.now() - started);
    this.deps.log.info({ version: model.version, posters: posters.length, ms }, 'embedding map computed');
    const content: MapFile = {
      format: MAP_FORMAT,
      model_version: model.version,
      params: this.params,
      fingerprint: print,
      created_at: new Date().toISOString(),
      points: posters.map((poster, i) => ({ key: poster.key, id: poster.id, x: round(coords[i * 2]!), y: round(coords[i * 2 + 1]!) })),
    };
    try {
      writeMapFile(file, content);
    } catch (error) {
      // The file only saves the next start a recomputation; the map itself is served either way.
      this.deps.log.warn({ version: model.version, err: error }, 'could not store the embedding map');
    }
    return this.toMap(model.version, content, posters, false);
  }

  private toMap(version: string, content: MapFile, posters: Poster[], cached: boolean): CatalogMap {
    const byKey = new Map(posters.map((p) => [p.key, p]));
    const points = content.points.map((point) => ({ poster: byKey.get(point.key)!, x: point.x, y: point.y }));
    return { modelVersion: version, params: content.params, points, cached };
  }
}

const round = (value: number) => Math.round(value * 1e5) / 1e5;

function readMapFile(file: string): MapFile | null {
  try {
    const content = JSON.parse(readFileSync(file, 'utf8')) as MapFile;
    return content.format === MAP_FORMAT ? content : null;
  } catch {
    return null;
  }
}

/** Written to a temporary file and renamed, so a reader never sees half a map. */
function writeMapFile(file: string, content: MapFile): void {
  writeAtomically(file, `${JSON.stringify(content)}\n`);
}
