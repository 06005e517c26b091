import type { Worker } from 'node:worker_threads';
import { ImageError } from '../errors.js';
import { startWorker } from '../worker-thread.js';
import type { Picture, PreprocessingSpec } from './preprocess.js';

/** What a decode thread is asked to do with an image: preprocessing.ts's three ways in. */
export type DecodeJob =
  | { kind: 'preprocess'; input: Uint8Array; spec: PreprocessingSpec; maxPixels: number }
  | { kind: 'identify'; input: Uint8Array; maxPixels: number }
  | { kind: 'render'; input: Uint8Array; spec: PreprocessingSpec; maxPixels: number };

export type DecodeOutput = { tensor: Float32Array; image: Picture } | Picture | Uint8Array;

export type ToDecodeWorker = { id: number; job: DecodeJob };
export type FromDecodeWorker =
  | { id: number; output: DecodeOutput }
  | { id: number; error: { message: string; image?: { status: 400 | 413 | 415 | 422; code: string } } };

interface Pending {
  resolve: (output: DecodeOutput) => void;
  reject: (error: Error) => void;
}

/** One decode thread and the job it runs. */
interface Thread {
  worker: Worker;
  job: Pending & { id: number } | null;
}

/**
 * Threads that decode images, one image each at a time. On the server's main thread a decoded
 * picture would outlive its use: V8 does not see sharp's pixel buffers, so it collects them when
 * its own heap asks for it (a flood of 48 uploads left 48 of them, 540 MB). A decode thread's heap
 * is small, and it collects its garbage after every image (a young-generation pass, under a
 * millisecond), so a picture's memory goes when its decode ends; the pixel hash (48 MB for
 * 16 Mpx) is off the event loop too. Threads start with the first job (or `start`) and do not keep the process alive.
 */
export class DecodePool {
  private readonly threads: Thread[] = [];
  private readonly queue: { id: number; job: DecodeJob; pending: Pending }[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly size: number) {}

  /** Starts the threads now, so that the first uploads do not wait for them (a server's start). */
  start(): void {
    while (!this.closed && this.threads.length < this.size) this.spawn();
  }

  /** Runs a job on a free thread (the decode budget admits at most `size` at once; more wait here). */
  run(job: DecodeJob): Promise<DecodeOutput> {
    if (this.closed) return Promise.reject(new Error('the decode threads were stopped'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, job, pending: { resolve, reject } });
      this.dispatch();
    });
  }

  /** Stops the threads; jobs in progress fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.splice(0).map((thread) => thread.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let thread = this.threads.find((t) => t.job === null);
      if (!thread && this.threads.length < this.size) thread = this.spawn();
      if (!thread) return;
      const { id, job, pending } = this.queue.shift()!;
      thread.job = { id, ...pending };
      thread.worker.postMessage({ id, job } satisfies ToDecodeWorker);
    }
  }

  private spawn(): Thread {
    const thread: Thread = { worker: startWorker(import.meta.url, 'decode-worker'), job: null };
    thread.worker.unref();
    thread.worker.on('message', (message: FromDecodeWorker) => {
      const job = thread.job;
      if (!job || job.id !== message.id) return;
      thread.job = null;
      if ('output' in message) job.resolve(message.output);
      else if (message.error.image) job.reject(new ImageError(message.error.image.status, message.error.image.code, message.error.message));
      else job.reject(new Error(message.error.message));
      this.dispatch();
    });
    const lost = (error: Error) => {
      const index = this.threads.indexOf(thread);
      if (index < 0) return;
      this.threads.splice(index, 1);
      thread.job?.reject(error);
      thread.job = null;
      if (!this.closed) this.dispatch();
    };
    thread.worker.on('error', lost);
    thread.worker.on('exit', (code) => lost(new Error(`a decode thread stopped (exit ${code})`)));
    this.threads.push(thread);
    return thread;
  }
}
