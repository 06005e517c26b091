import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { ApiError } from '../errors.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Bearer-token check for the admin routes, compared in constant time (over digests, so the
 * token's length leaks nothing either). Without a token the admin routes stay shut, unless they
 * were explicitly opened on a loopback-only server (MARQUEE_ADMIN_OPEN_LOOPBACK=1).
 */
export function adminAuth(config: Pick<Config, 'adminToken' | 'adminOpenLoopback'>) {
  const expected = config.adminToken ? digest(config.adminToken) : null;
  return async (request: FastifyRequest): Promise<void> => {
    if (!expected) {
      if (config.adminOpenLoopback) return;
      throw new ApiError(403, 'admin_disabled', 'admin routes are disabled: set MARQUEE_ADMIN_TOKEN (or MARQUEE_ADMIN_OPEN_LOOPBACK=1 on a loopback-only server)');
    }
    const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
    if (!match || !timingSafeEqual(digest(match[1]!.trim()), expected)) {
      throw new ApiError(401, 'unauthorized', 'send the admin token as "Authorization: Bearer <MARQUEE_ADMIN_TOKEN>"', {
        'www-authenticate': 'Bearer realm="marquee-admin"',
      });
    }
  };
}
