// The embedding map's computation on a thread of its own: UMAP over the sampled posters'
// embeddings (tens of seconds of pure JavaScript), while the server's event loop keeps answering.
import { parentPort, workerData } from 'node:worker_threads';
import { layoutMap } from './map-layout.js';
import type { LayoutJob, LayoutResult } from './map-cache.js';

const { data, dims, params } = workerData as LayoutJob;
const coords = layoutMap(data, dims, params);
parentPort!.postMessage({ coords } satisfies LayoutResult, [coords.buffer as ArrayBuffer]);
