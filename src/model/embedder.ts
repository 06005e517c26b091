import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Device } from '../config.js';
import type { Logger } from '../log.js';

export interface EmbedderOptions {
  modelPath: string;
  inputName: string;
  outputName: string;
  width: number;
  height: number;
  dims: number;
  device: Device;
  threads: number;
  spinning: boolean;
}

/** `busy`: other work is waiting, so the batch runs on the session whose threads do not spin (see the worker). */
export type ToWorker = { type: 'embed'; id: number; n: number; batch: Float32Array; busy: boolean } | { type: 'release' };
export type FromWorker =
  | { type: 'ready'; provider: 'cuda' | 'cpu'; fallback?: string }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; output: Float32Array }
  | { type: 'error'; id: number; message: string }
  | { type: 'released' };

// Compiled, this module is dist/model/embedder.js beside embedder-worker.js; under tsx (tests,
// benchmarks) it is the .ts source, and the worker needs tsx's loader too.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER = new URL(FROM_SOURCE ? './embedder-worker.ts' : './embedder-worker.js', import.meta.url);

function startWorker(options: EmbedderOptions): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER, { workerData: options });
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData: options });
}

/**
 * One onnxruntime session, run on a worker thread: a batch of CHW tensors in, one embedding per
 * image out. The session's forward pass never blocks the caller's event loop.
 */
export class Embedder {
  private readonly pending = new Map<number, { resolve: (output: Float32Array) => void; reject: (error: Error) => void }>();
  private nextId = 0;
  private released: Promise<void> | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly options: EmbedderOptions,
    readonly provider: 'cuda' | 'cpu',
  ) {
    worker.on('message', (message: FromWorker) => {
      if (message.type !== 'result' && message.type !== 'error') return;
      const waiting = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.type === 'result') waiting?.resolve(message.output);
      else waiting?.reject(new Error(message.message));
    });
    worker.on('error', (error) => this.failAll(error));
    worker.on('exit', () => this.failAll(new Error('the embedding worker stopped')));
  }

  static async load(options: EmbedderOptions, log: Logger): Promise<Embedder> {
    const worker = startWorker(options);
    const [first] = (await Promise.race([once(worker, 'message'), once(worker, 'error').then(([error]) => Promise.reject(error))])) as [FromWorker];
    if (first.type !== 'ready') {
      await worker.terminate();
      throw new Error(first.type === 'failed' ? first.message : `unexpected message from the embedding worker: ${first.type}`);
    }
    if (first.provider === 'cuda') log.info({ provider: 'cuda' }, 'embedding on CUDA');
    else if (first.fallback) log.info({ provider: 'cpu', reason: first.fallback }, 'CUDA execution provider unavailable, embedding on CPU');
    else log.info({ provider: 'cpu' }, 'embedding on CPU (MARQUEE_DEVICE=cpu)');
    return new Embedder(worker, options, first.provider);
  }

  get inputSize(): number {
    return 3 * this.options.width * this.options.height;
  }

  /** Embeds a batch; `busy` says more work is waiting (the batcher's queue), which the worker's thread spinning would slow. */
  async embed(tensors: Float32Array[], busy = false): Promise<Float32Array[]> {
    if (this.released) throw new Error('the embedder was released');
    const n = tensors.length;
    const batch = new Float32Array(n * this.inputSize);
    tensors.forEach((tensor, i) => batch.set(tensor, i * this.inputSize));
    const id = this.nextId++;
    const output = await new Promise<Float32Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'embed', id, n, batch, busy } satisfies ToWorker, [batch.buffer]);
    });
    const dims = this.options.dims;
    if (output.length !== n * dims) throw new Error(`model returned ${output.length / n} values per image, expected ${dims}`);
    return Array.from({ length: n }, (_, i) => output.subarray(i * dims, (i + 1) * dims));
  }

  /** Frees the session and stops its thread; waits for a batch in progress to finish first. */
  release(): Promise<void> {
    this.released ??= (async () => {
      this.worker.postMessage({ type: 'release' } satisfies ToWorker);
      await new Promise<void>((resolve) => {
        const onMessage = (message: FromWorker) => message.type === 'released' && resolve();
        this.worker.on('message', onMessage);
        this.worker.once('exit', () => resolve());
      });
      await this.worker.terminate();
    })();
    return this.released;
  }

  private failAll(error: Error): void {
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}
