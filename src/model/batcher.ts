import { ApiError } from '../errors.js';

export interface BatcherOptions {
  maxBatchSize: number;
  maxWaitMs: number;
  /** Requests waiting beyond the one batch in flight; past this the batcher refuses. */
  maxQueue: number;
}

export interface BatchStats {
  onBatch(size: number, seconds: number): void;
}

interface Pending<I, O> {
  input: I;
  resolve(output: O): void;
  reject(error: unknown): void;
}

/**
 * Dynamic micro-batching: concurrent requests are run together, one batch at a time. A batch
 * starts when it is full or when its first request has waited maxWaitMs; requests arriving
 * while a batch runs form the next one. The queue is bounded: a full queue answers 503.
 */
export class MicroBatcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private running = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly run: (inputs: I[]) => Promise<O[]>,
    private readonly options: BatcherOptions,
    private readonly stats?: BatchStats,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  /** Throws the 503 that a submit would answer now, so that a caller can refuse before doing work for it. */
  refuseIfFull(): void {
    if (this.queue.length >= this.options.maxQueue) {
      throw new ApiError(503, 'overloaded', 'too many images are waiting to be embedded; retry shortly', { 'retry-after': '1' });
    }
  }

  submit(input: I): Promise<O> {
    try {
      this.refuseIfFull();
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running) return;
    if (this.queue.length >= this.options.maxBatchSize || this.options.maxWaitMs === 0) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.options.maxWaitMs);
    }
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.running || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatchSize);
    this.running = true;
    const started = process.hrtime.bigint();
    this.run(batch.map((p) => p.input))
      .then((outputs) => {
        this.stats?.onBatch(batch.length, Number(process.hrtime.bigint() - started) / 1e9);
        batch.forEach((p, i) => p.resolve(outputs[i]!));
      })
      .catch((error) => batch.forEach((p) => p.reject(error)))
      .finally(() => {
        this.running = false;
        // What arrived during the run has already waited: run it now rather than waiting again.
        if (this.queue.length > 0) this.flush();
      });
  }
}
