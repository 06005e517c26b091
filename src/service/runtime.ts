import { ApiError } from '../errors.js';
import type { Engine } from './engine.js';

/** The engine in service, and why there is none yet. */
export class Runtime {
  private engine: Engine | null = null;
  private reason = 'starting';
  private writes: Promise<unknown> = Promise.resolve();
  /** Why this server should not be sent requests although it still answers (switching models); cleared by the next swap. */
  private held: string | null = null;

  /** Whether it takes requests: an engine in service, and not held. */
  get ready(): boolean {
    return this.engine !== null && this.held === null;
  }

  get notReadyReason(): string {
    return this.held ?? this.reason;
  }

  /** Says not ready (to a load balancer's health check) while requests in flight and arriving still get answers. */
  hold(reason: string): void {
    this.held = reason;
  }

  setStatus(reason: string): void {
    this.reason = reason;
  }

  /**
   * Runs a request on the engine in service when it starts. A swap during the request does not
   * change its engine, and the old engine is disposed only after its last request finishes.
   */
  async use<T>(work: (engine: Engine) => Promise<T>): Promise<T> {
    const engine = this.engine;
    if (!engine) throw new ApiError(503, 'not_ready', `the service is not ready: ${this.reason}`, { 'retry-after': '5' });
    engine.enter();
    try {
      return await work(engine);
    } finally {
      engine.leave();
    }
  }

  peek(): Engine | null {
    return this.engine;
  }

  /**
   * Catalog writes and swaps, one at a time: a write lands on the engine in service (and in SQLite)
   * before a swap loads the next engine from SQLite, so no write is lost across a swap.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.writes.then(work, work);
    this.writes = run.catch(() => undefined);
    return run;
  }

  /** Puts a new engine in service in one step; the previous one retires once its requests finish. */
  swap(engine: Engine): void {
    const previous = this.engine;
    this.engine = engine;
    this.held = null;
    if (previous && previous !== engine) previous.retire();
  }
}
