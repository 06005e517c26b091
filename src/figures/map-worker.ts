// UMAP of the whole catalog takes tens of seconds of pure JavaScript: on this thread, the
// server's event loop keeps answering meanwhile.
import { parentPort, workerData } from 'node:worker_threads';
import { layoutMap, type MapParams } from './map-layout.js';

const { data, dims, params } = workerData as { data: Float32Array; dims: number; params: MapParams };
parentPort!.postMessage(layoutMap(data, dims, params));
