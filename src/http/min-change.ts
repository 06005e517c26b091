import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { ApiError } from '../errors.js';
import type { Runtime } from '../service/runtime.js';

export const MIN_CHANGE_HEADER = 'marquee-min-change';

/**
 * Reading one's own writes across servers: a write answers `Marquee-Change: <id>`; a request with
 * `Marquee-Min-Change: <id>` is answered by this server once it has applied that change, waiting up
 * to MARQUEE_MIN_CHANGE_WAIT_MS, else 503 `not_caught_up` with Retry-After (a load balancer retries
 * it on another server). Where one server writes (SQLite), every change is applied before its answer.
 */
export function minChangeHook(config: Pick<Config, 'minChangeWaitMs'>, runtime: Runtime) {
  return async (request: FastifyRequest): Promise<void> => {
    const asked = request.headers[MIN_CHANGE_HEADER];
    if (asked === undefined) return;
    if (typeof asked !== 'string' || !/^\d{1,19}$/.test(asked)) {
      throw new ApiError(400, 'invalid_request', 'Marquee-Min-Change is a change id: the Marquee-Change header of a write');
    }
    const engine = runtime.peek();
    if (!engine) return; // not ready: the route answers 503 not_ready itself
    if (!(await engine.caughtUp(BigInt(asked), config.minChangeWaitMs))) {
      throw new ApiError(503, 'not_caught_up', `this server has not applied change ${asked} within ${config.minChangeWaitMs} ms; another server may have`, {
        'retry-after': '1',
      });
    }
  };
}
