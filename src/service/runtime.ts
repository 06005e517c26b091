import { ApiError } from '../errors.js';
import type { Engine } from './engine.js';

/** The engine in service, and why there is none yet. */
export class Runtime {
  private engine: Engine | null = null;
  private reason = 'starting';

  get ready(): boolean {
    return this.engine !== null;
  }

  get notReadyReason(): string {
    return this.reason;
  }

  setStatus(reason: string): void {
    this.reason = reason;
  }

  /** The engine a request should use from start to end. */
  current(): Engine {
    if (!this.engine) throw new ApiError(503, 'not_ready', `the service is not ready: ${this.reason}`, { 'retry-after': '5' });
    return this.engine;
  }

  peek(): Engine | null {
    return this.engine;
  }

  /** Puts a new engine in service in one step; returns the previous one for release by the caller. */
  swap(engine: Engine): Engine | null {
    const previous = this.engine;
    this.engine = engine;
    return previous;
  }
}
