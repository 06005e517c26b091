import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Searches of a usearch graph file for several queries at once, by walks that take turns so that
 * one's waits on memory pass while the others score (src/search/native/graph-walk.cc): at a
 * million posters, 3 queries in 457–477 µs at p50 where usearch's binding took 586–767, with the
 * same answers. Built by `npm install` (scripts/build-native.mjs); where it is not, openGraphWalk
 * answers null and the searches go through usearch's binding.
 */
export interface GraphWalk {
  /**
   * Each query's nearest (at most `count`, walking with max(count, expansion)): query j's at
   * j × count, `counts[j]` of them, nearest first, with squared Euclidean distances; on up to
   * `threads` threads (one by default, two at most), one kept between calls for the second.
   */
  searchEach(queries: Float32Array, count: number, expansion: number, threads?: number): [keys: BigUint64Array, distances: Float32Array, counts: Uint32Array];
  size(): number;
}

type Addon = { GraphWalk: new (file: string) => GraphWalk };

const ADDON_PATH = fileURLToPath(new URL('../../build/Release/graph_walk.node', import.meta.url));
let addon: Addon | null | undefined;
/** Why the last graph file opened has no walk: the addon did not load, or the file is of a kind it does not read; null when it has one. */
export let graphWalkUnavailable: string | null = null;

function loadAddon(): Addon | null {
  if (addon !== undefined) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
  } catch (error) {
    addon = null;
    graphWalkUnavailable = `${ADDON_PATH} did not load: ${(error as Error).message.split('\n')[0]}`;
  }
  return addon;
}

/**
 * A walk of the graph file (f32 or f16 vectors); null, with the reason in graphWalkUnavailable, when
 * the addon is not built or the file is not one it reads: usearch's own view of it may still serve.
 */
export function openGraphWalk(file: string): GraphWalk | null {
  const loaded = loadAddon();
  if (!loaded) return null;
  try {
    const walk = new loaded.GraphWalk(file);
    graphWalkUnavailable = null;
    return walk;
  } catch (error) {
    graphWalkUnavailable = `${file}: ${(error as Error).message}`;
    return null;
  }
}
