import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { isLoopback, type Config } from '../config.js';
import { ApiError } from '../errors.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * The header loopback mode asks of every admin write. A page on another origin cannot send a custom
 * header without a CORS preflight, which this server never grants; a form or a text/plain fetch
 * cannot send it at all. Swagger UI sends it (src/http/server.ts).
 */
export const ADMIN_WRITE_HEADER = 'x-marquee-admin';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The hostname of a Host header or URL host ("127.0.0.1:8080", "[::1]:8080", "localhost"), without its port. */
function hostname(host: string): string {
  const match = /^(?:\[([^\]]+)\]|([^:]*))(?::\d{1,5})?$/.exec(host);
  return (match?.[1] ?? match?.[2] ?? '').toLowerCase();
}

/**
 * Loopback mode (MARQUEE_ADMIN_OPEN_LOOPBACK=1, no token) trusts whoever can reach the loopback
 * address, which includes the browser of the developer running it: a page they visit can post a
 * form to http://127.0.0.1:8080, and a name rebound to 127.0.0.1 makes its requests same-origin.
 * So a request must name a loopback host (a rebound name arrives with the attacker's Host), an
 * Origin, when sent, must be this server's own, and a write must carry ADMIN_WRITE_HEADER.
 */
function checkLoopbackRequest(request: FastifyRequest): void {
  const host = request.headers.host ?? '';
  if (!isLoopback(hostname(host))) {
    throw new ApiError(403, 'admin_host_refused', `admin routes without a token answer only a loopback Host (127.0.0.1, [::1] or localhost, with the port), not "${host}"`);
  }
  const origin = request.headers.origin;
  if (origin !== undefined) {
    let sameOrigin = false;
    try {
      const url = new URL(origin);
      sameOrigin = (url.protocol === 'http:' || url.protocol === 'https:') && url.host === host.toLowerCase() && isLoopback(hostname(url.host));
    } catch {
      /* "null" or garbage: not this server */
    }
    if (!sameOrigin) throw new ApiError(403, 'admin_origin_refused', `admin routes without a token refuse requests from another origin (${origin})`);
  }
  if (!READS.has(request.method) && request.headers[ADMIN_WRITE_HEADER] !== '1') {
    throw new ApiError(403, 'admin_header_required', `admin writes without a token need the header "X-Marquee-Admin: 1"`);
  }
}

/**
 * Bearer-token check for the admin routes, compared in constant time (over digests, so the
 * token's length leaks nothing either). Without a token the admin routes stay shut, unless they
 * were explicitly opened on a loopback-only server (MARQUEE_ADMIN_OPEN_LOOPBACK=1), where each
 * request must still come from a loopback page of this server's own (checkLoopbackRequest).
 */
export function adminAuth(config: Pick<Config, 'adminToken' | 'adminOpenLoopback'>) {
  const expected = config.adminToken ? digest(config.adminToken) : null;
  return async (request: FastifyRequest): Promise<void> => {
    if (!expected) {
      if (config.adminOpenLoopback) return checkLoopbackRequest(request);
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
