import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Catalog, Poster } from '../state/catalog.js';
import type { EmbeddingSpace, EmbeddingStore } from '../state/embeddings.js';
import { writeAtomically } from '../state/files.js';
import type { ModelVersion } from '../state/models.js';
import { startWorker } from '../worker-thread.js';
import { MAP_PARAMS, type MapParams } from './map-layout.js';
import { sample, seededRandom } from './random.js';

export const MAP_FORMAT = 'marquee-map/2';

/** Past this many posters a map is of a sample of them: UMAP's time and the answer's size grow with the points. */
export const MAP_POINT_CAP = 20_000;
/** A version's map is computed again at most this often, however often the catalog changes; meanwhile the last one is served, labelled afresh. */
export const MAP_RECOMPUTE_INTERVAL_MS = 60_000;
/** After a failed computation, none is tried for this long: requests meanwhile get the last map, or 503 when there is none. */
export const MAP_FAILURE_MEMORY_MS = 5 * 60_000;

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
  /** The catalog state (Catalog.fingerprint) whose posters' genres label the points. */
  catalogFingerprint: string;
  /** Posters in the catalog when the coordinates were computed; more than the points when they are a sample. */
  catalogPosters: number;
  /** Read from the cache file rather than computed by this process. */
  cached: boolean;
}

/** Coordinates by poster key, as computed for a catalog whose `pictures` counter (Catalog.changes) was this; also the cache file. */
interface Layout {
  format: typeof MAP_FORMAT;
  model_version: string;
  precision: string;
  params: MapParams;
  cap: number;
  pictures: number;
  posters: number;
  created_at: string;
  points: { key: number; x: number; y: number }[];
}

/** What a map thread is given (map-worker.ts): the sampled posters' embeddings, a row each; it answers their coordinates. */
export interface LayoutJob {
  data: Float32Array;
  dims: number;
  params: MapParams;
}
export interface LayoutResult {
  coords: Float32Array;
}

/** Embeddings read per query while gathering a map's points. */
const READ_PIECE = 1000;

export interface MapOptions {
  cap?: number;
  intervalMs?: number;
  failureMs?: number;
}

/** What is known of one version's map. */
interface VersionMaps {
  layout: Layout | null;
  cachedFile: boolean;
  labelled: { changes: number; layout: Layout; map: CatalogMap } | null;
  computing: Promise<Layout> | null;
  startedAt: number;
  failure: { message: string; at: number } | null;
}

export function mapPath(dataDir: string, version: string): string {
  return join(dataDir, 'maps', `${version}.json`);
}

const round = (value: number) => Math.round(value * 1e5) / 1e5;

/**
 * The 2-D embedding map of the catalog under a model version, as a cached artefact: coordinates
 * computed with UMAP on a thread that reads SQLite itself (the event loop only labels points), of a
 * sample past MAP_POINT_CAP posters, kept in the data dir (maps/<version>.json) and in memory with
 * the catalog's change counter they describe (migrations/012: no hashing of the posters table). A
 * picture added, removed or replaced makes them stale: they are computed again at most every
 * MAP_RECOMPUTE_INTERVAL_MS, in the background while a map exists (the last one is served
 * meanwhile, labelled with the current genres), and a failure is remembered for MAP_FAILURE_MEMORY_MS.
 */
export class CatalogMaps {
  private readonly versions = new Map<string, VersionMaps>();
  private readonly cap: number;
  private readonly intervalMs: number;
  private readonly failureMs: number;

  constructor(
    private readonly deps: { dataDir: string; catalog: Catalog; embeddings: EmbeddingStore; log: Logger },
    private readonly params: MapParams = MAP_PARAMS,
    options: MapOptions = {},
  ) {
    this.cap = options.cap ?? MAP_POINT_CAP;
    this.intervalMs = options.intervalMs ?? MAP_RECOMPUTE_INTERVAL_MS;
    this.failureMs = options.failureMs ?? MAP_FAILURE_MEMORY_MS;
  }

  async get(model: ModelVersion): Promise<CatalogMap> {
    const counters = await this.deps.catalog.changes();
    const maps = this.mapsOf(model);
    if (maps.layout?.pictures !== counters.pictures) {
      const computing = this.recompute(model, maps, counters.pictures);
      if (!maps.layout) {
        if (!computing) throw this.unavailable(maps);
        await computing;
      }
    }
    return this.labelled(maps, counters.changes);
  }

  private mapsOf(model: ModelVersion): VersionMaps {
    let maps = this.versions.get(model.version);
    if (!maps) {
      const file = this.readFile(model);
      maps = { layout: file, cachedFile: file !== null, labelled: null, computing: null, startedAt: 0, failure: null };
      this.versions.set(model.version, maps);
    }
    return maps;
  }

  /** A computation of the map, started now unless one runs, one ran too recently, or one failed recently (then null). */
  private recompute(model: ModelVersion, maps: VersionMaps, pictures: number): Promise<Layout> | null {
    if (maps.computing) return maps.computing;
    const now = Date.now();
    if (maps.failure && now - maps.failure.at < this.failureMs) return null;
    if (maps.layout && now - maps.startedAt < this.intervalMs) return null;
    maps.startedAt = now;
    const computing = this.compute(model, pictures)
      .then(
        (layout) => {
          maps.layout = layout;
          maps.cachedFile = false;
          maps.failure = null;
          return layout;
        },
        (error: Error) => {
          maps.failure = { message: error.message, at: Date.now() };
          this.deps.log.error({ version: model.version, err: error }, 'the embedding map could not be computed');
          throw this.unavailable(maps);
        },
      )
      .finally(() => {
        maps.computing = null;
      });
    computing.catch(() => {}); // a background computation's failure is remembered; a waiting request gets it too
    maps.computing = computing;
    return computing;
  }

  private unavailable(maps: VersionMaps): ApiError {
    const failure = maps.failure ?? { message: 'unknown', at: Date.now() };
    const seconds = Math.max(1, Math.ceil((failure.at + this.failureMs - Date.now()) / 1000));
    return new ApiError(503, 'map_unavailable', `the embedding map could not be computed (${failure.message}); it is tried again in ${seconds} s`, {
      'retry-after': String(seconds),
    });
  }

  private async compute(model: ModelVersion, pictures: number): Promise<Layout> {
    const started = performance.now();
    this.deps.log.info({ version: model.version, cap: this.cap }, 'computing the embedding map (UMAP)');
    const { keys, data, posters, unembedded } = await this.points(model);
    const job: LayoutJob = { data, dims: model.dims, params: this.params };
    const worker = startWorker(import.meta.url, 'map-worker', { workerData: job, transferList: [data.buffer as ArrayBuffer] });
    let result: LayoutResult;
    try {
      [result] = (await Promise.race([
        once(worker, 'message'),
        once(worker, 'error').then(([error]) => Promise.reject(error)),
        once(worker, 'exit').then(([code]) => Promise.reject(new Error(`the map thread stopped (exit ${code})`))),
      ])) as [LayoutResult];
    } finally {
      await worker.terminate();
    }
    const { coords } = result;
    this.deps.log.info({ version: model.version, points: keys.length, posters, unembedded, ms: Math.round(performance.now() - started) }, 'embedding map computed');
    const layout: Layout = {
      format: MAP_FORMAT,
      model_version: model.version,
      precision: model.precision,
      params: this.params,
      cap: this.cap,
      pictures,
      posters,
      created_at: new Date().toISOString(),
      points: keys.map((key, i) => ({ key, x: round(coords[i * 2]!), y: round(coords[i * 2 + 1]!) })),
    };
    try {
      writeAtomically(mapPath(this.deps.dataDir, model.version), `${JSON.stringify(layout)}\n`);
    } catch (error) {
      // The file only saves the next start a computation; the map itself is served either way.
      this.deps.log.warn({ version: model.version, err: error }, 'could not store the embedding map');
    }
    return layout;
  }

  /** The posters a map shows (a seeded sample past the cap) and their embeddings, read a piece at a time. */
  private async points(model: ModelVersion): Promise<{ keys: number[]; data: Float32Array; posters: number; unembedded: number }> {
    const { embeddings, catalog } = this.deps;
    const space: EmbeddingSpace = { version: model.version, precision: model.precision };
    const embedded = await embeddings.embeddedKeys(space);
    const posters = await catalog.count();
    const keys = embedded.length > this.cap ? sample(embedded, this.cap, seededRandom(this.params.seed)).sort((a, b) => a - b) : embedded;
    const data = new Float32Array(keys.length * model.dims);
    for (let start = 0; start < keys.length; start += READ_PIECE) {
      const piece = keys.slice(start, start + READ_PIECE);
      const vectors = await embeddings.getMany(space, piece);
      piece.forEach((key, i) => data.set(vectors.get(key)!, (start + i) * model.dims));
    }
    return { keys, data, posters, unembedded: posters - embedded.length };
  }

  /** The layout's points with their posters as they are now (those deleted since left out), made once per catalog change. */
  private async labelled(maps: VersionMaps, changes: number): Promise<CatalogMap> {
    const layout = maps.layout!;
    if (maps.labelled?.changes === changes && maps.labelled.layout === layout) return maps.labelled.map;
    const posters = await this.deps.catalog.getMany(layout.points.map((p) => p.key));
    const points: MapPoint[] = [];
    for (const { key, x, y } of layout.points) {
      const poster = posters.get(key);
      if (poster) points.push({ poster, x, y });
    }
    const map: CatalogMap = {
      modelVersion: layout.model_version,
      params: layout.params,
      points,
      catalogFingerprint: await this.deps.catalog.fingerprint(),
      catalogPosters: layout.posters,
      cached: maps.cachedFile,
    };
    maps.labelled = { changes, layout, map };
    return map;
  }

  /** The cache file, when it was computed with these settings for this variant. */
  private readFile(model: ModelVersion): Layout | null {
    try {
      const layout = JSON.parse(readFileSync(mapPath(this.deps.dataDir, model.version), 'utf8')) as Layout;
      const same =
        layout.format === MAP_FORMAT &&
        layout.model_version === model.version &&
        layout.precision === model.precision &&
        layout.cap === this.cap &&
        JSON.stringify(layout.params) === JSON.stringify(this.params);
      return same ? layout : null;
    } catch {
      return null;
    }
  }
}
