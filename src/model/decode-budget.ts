import { ApiError } from '../errors.js';

/** How long a decode may wait for room: a request's a short while at most, background work as long as it takes. */
export type DecodeWait = 'request' | 'background';

export interface DecodeBudgetOptions {
  /** Bytes that decodes in progress may take together. */
  bytes: number;
  /** Decodes at once. */
  slots: number;
  /** Longest a request's large decode waits for room before 503 `overloaded`. */
  waitMs?: number;
  /** Longest a request's ordinary decode waits (its turn on a busy CPU) before 503 `overloaded`. */
  queueWaitMs?: number;
  /** Requests waiting at most, of large decodes and of ordinary ones each; past that 503 `overloaded` at once. */
  maxWaiting?: number;
  /** Told of every change of the bytes in use, and of every refusal. */
  onChange?: (inUse: number, waiting: number) => void;
  onRefusal?: () => void;
}

/**
 * A decode of more than this (4 Mpx of RGB; an ordinary poster takes a few MB) is large: large ones
 * leave a slot to the others, and wait a second at most.
 */
export const LARGE_DECODE_BYTES = 24 * 1024 * 1024;
export const DEFAULT_DECODE_WAIT_MS = 1000;
export const DEFAULT_QUEUE_WAIT_MS = 10_000;
export const DEFAULT_MAX_WAITING = 64;

interface Waiter {
  cost: number;
  request: boolean;
  admit: () => void;
}

/**
 * The memory that decoding images may take at once, and how many decode at once. Each decode is
 * admitted on its cost, computed from the image's header before any pixel is decoded
 * (preprocess.ts decodeCost): a full budget, or no free slot, makes it wait. A request's large
 * decode waits `waitMs` (a second) at most, an ordinary one `queueWaitMs` (its turn on a busy CPU),
 * and no more than `maxWaiting` requests of each kind wait: past those, 503 `overloaded` with Retry-After.
 * Waiters are admitted in order of arrival, but one that fits goes ahead of one that does not yet,
 * and large decodes never take the last slot: ordinary posters are not queued behind a flood of huge ones.
 */
export class DecodeBudget {
  private used = 0;
  private highest = 0;
  private running = 0;
  private runningLarge = 0;
  private readonly waiting: Waiter[] = [];
  private readonly waitMs: number;
  private readonly queueWaitMs: number;
  private readonly maxWaiting: number;

  constructor(private readonly options: DecodeBudgetOptions) {
    if (options.slots < 1) throw new Error('a decode budget needs a slot');
    this.waitMs = options.waitMs ?? DEFAULT_DECODE_WAIT_MS;
    this.queueWaitMs = options.queueWaitMs ?? DEFAULT_QUEUE_WAIT_MS;
    this.maxWaiting = options.maxWaiting ?? DEFAULT_MAX_WAITING;
  }

  get bytes(): number {
    return this.options.bytes;
  }

  /** Bytes taken by decodes in progress. */
  get inUse(): number {
    return this.used;
  }

  /** The most bytes ever in use at once. */
  get peak(): number {
    return this.highest;
  }

  /**
   * Runs a decode of `cost` bytes once it fits. A request's waits as the class says, then gets
   * 503 `overloaded` with Retry-After; background work (the catalog import, embedding the catalog,
   * rendering training inputs, a batch's items) waits its turn.
   */
  async run<T>(cost: number, wait: DecodeWait, decode: () => Promise<T>): Promise<T> {
    if (cost > this.options.bytes) {
      // config.ts makes the budget hold a 16-bit RGBA image at the pixel limit: only rarer kinds (float TIFF) get here.
      throw new ApiError(
        422,
        'too_many_pixels',
        `decoding the image takes ${megabytes(cost)} MB, more than the server's whole decode budget (${megabytes(this.options.bytes)} MB)`,
      );
    }
    await this.acquire(cost, wait === 'request');
    try {
      return await decode();
    } finally {
      this.release(cost);
    }
  }

  private fits(cost: number): boolean {
    if (this.running >= this.options.slots || this.used + cost > this.options.bytes) return false;
    return cost <= LARGE_DECODE_BYTES || this.runningLarge < Math.max(1, this.options.slots - 1);
  }

  private take(cost: number): void {
    this.used += cost;
    this.highest = Math.max(this.highest, this.used);
    this.running += 1;
    if (cost > LARGE_DECODE_BYTES) this.runningLarge += 1;
    this.changed();
  }

  private acquire(cost: number, request: boolean): Promise<void> {
    if (this.fits(cost)) {
      this.take(cost);
      return Promise.resolve();
    }
    // Counted by kind: a flood of large decodes waiting does not turn ordinary posters away.
    const large = cost > LARGE_DECODE_BYTES;
    if (request && this.waiting.filter((w) => w.request && (w.cost > LARGE_DECODE_BYTES) === large).length >= this.maxWaiting) return Promise.reject(this.refused());
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      const waiter: Waiter = {
        cost,
        request,
        admit: () => {
          if (timer) clearTimeout(timer);
          this.take(cost);
          resolve();
        },
      };
      if (request) {
        timer = setTimeout(
          () => {
            this.waiting.splice(this.waiting.indexOf(waiter), 1);
            this.changed();
            reject(this.refused());
          },
          large ? this.waitMs : this.queueWaitMs,
        );
        timer.unref();
      }
      this.waiting.push(waiter);
      this.changed();
    });
  }

  private refused(): ApiError {
    this.options.onRefusal?.();
    return new ApiError(503, 'overloaded', 'too many images are being decoded; retry shortly', { 'retry-after': '1' });
  }

  private release(cost: number): void {
    this.used -= cost;
    this.running -= 1;
    if (cost > LARGE_DECODE_BYTES) this.runningLarge -= 1;
    for (let i = 0; i < this.waiting.length; ) {
      const waiter = this.waiting[i]!;
      if (this.fits(waiter.cost)) {
        this.waiting.splice(i, 1);
        waiter.admit();
      } else {
        i += 1;
      }
    }
    this.changed();
  }

  private changed(): void {
    this.options.onChange?.(this.used, this.waiting.length);
  }
}

const megabytes = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
