import { STATUS_CODES, type IncomingMessage, type ServerOptions, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError } from 'fastify';
import type { Config } from '../config.js';
import { ApiError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/**
 * How long a client may take, as Fastify server options: neither Fastify nor Node limits how slowly
 * a request may arrive, so a client sending a byte a second would hold a socket and its buffers for
 * as long as it liked. Node checks its connections every `connectionsCheckingInterval`, so a slow
 * request is cut off at most that long after its timeout.
 */
export function serverTimeouts(
  config: Pick<Config, 'requestTimeoutMs' | 'headersTimeoutMs' | 'keepAliveTimeoutMs' | 'connectionTimeoutMs'>,
  metrics: Metrics,
  log: Logger,
): {
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionTimeout: number;
  http: ServerOptions;
  clientErrorHandler: (error: ConnectionError, socket: Socket) => void;
} {
  return {
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    connectionTimeout: config.connectionTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(config.headersTimeoutMs / 4))),
    },
    clientErrorHandler: clientErrorHandler(metrics, log),
  };
}

/** What the HTTP parser's errors are answered with, in the one error shape. */
function answerFor(error: ConnectionError): ApiError {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return new ApiError(408, 'request_timeout', 'the request did not arrive in time (MARQUEE_HEADERS_TIMEOUT_MS, MARQUEE_REQUEST_TIMEOUT_MS)');
  }
  if (error.code === 'HPE_HEADER_OVERFLOW') return new ApiError(431, 'headers_too_large', 'the request headers are larger than the server accepts');
  return new ApiError(400, 'bad_request', 'the request is not valid HTTP');
}

/**
 * Errors Node's HTTP server raises outside any route: a request that did not arrive in time (its
 * headers, or its body while a handler reads it), or one that is not HTTP. Answered on the socket,
 * unless a response has begun there, then the connection is closed; timeouts are counted.
 */
function clientErrorHandler(metrics: Metrics, log: Logger) {
  return (error: ConnectionError, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const answer = answerFor(error);
    if (answer.statusCode === 408) metrics.requestTimeouts.inc();
    log.debug({ code: error.code, remote: socket.remoteAddress }, `client error: ${answer.code}`);
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) {
      const body = JSON.stringify({ error: { code: answer.code, message: answer.message } });
      socket.write(
        `HTTP/1.1 ${answer.statusCode} ${STATUS_CODES[answer.statusCode]}\r\n` +
          `Connection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  };
}

/**
 * For a request answered only once its work is done, which may take minutes (an activation embeds
 * the catalog with the new model and waits for every server to load it): the connection's idle
 * timeout (MARQUEE_CONNECTION_TIMEOUT_MS) would close it under the work, and a load balancer takes
 * a connection closed without an answer for a lost request and sends it again, to another server.
 * Paused until the answer has gone.
 */
export function keepOpenWhileWorking(request: IncomingMessage, reply: ServerResponse, idleTimeoutMs: number): void {
  const socket = request.socket;
  socket.setTimeout(0);
  reply.once('close', () => {
    if (!socket.destroyed) socket.setTimeout(idleTimeoutMs);
  });
}
