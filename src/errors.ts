/** An error a client caused or must react to; rendered as {"error": {"code", "message"}}. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`);

/** An upload that is not a usable image. `status` separates "not an image" (415) from "broken image" (422). */
export class ImageError extends ApiError {
  constructor(status: 400 | 413 | 415 | 422, code: string, message: string) {
    super(status, code, message);
  }
}

const STORAGE_FULL = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/** The data dir's disk (or quota) is full: a file write failed with ENOSPC/EDQUOT, or SQLite with SQLITE_FULL. */
export function isStorageFull(error: unknown): boolean {
  return STORAGE_FULL.has(String((error as { code?: unknown } | null)?.code ?? ''));
}

/**
 * The shared database cannot take this request now (PostgreSQL): the connection refused or lost, the
 * server shutting down or starting, or it is a standby that does not take writes yet (a failover
 * under way). SQLSTATE class 08, 57P01–57P03, 25006, and the client's own connection errors.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const sqlState = String(code ?? '');
  if (/^08|^57P0[123]$|^25006$/.test(sqlState) || ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(sqlState)) return true;
  return typeof message === 'string' && /^Connection terminated|^timeout exceeded when trying to connect|^Client (has encountered a connection error|was closed) and is not queryable/.test(message);
}

/**
 * An error that already says what to answer: an ApiError, a full disk beneath (507), the shared
 * database unavailable (503, which a load balancer retries); null for anything else.
 */
export function answerOf(error: unknown): ApiError | null {
  if (error instanceof ApiError) return error;
  if (isDatabaseUnavailable(error)) {
    return new ApiError(503, 'database_unavailable', `the database cannot take this request now (${(error as Error).message}); try again`, { 'retry-after': '1' });
  }
  return isStorageFull(error) ? insufficientStorage(error) : null;
}

export function insufficientStorage(error: unknown): ApiError {
  return new ApiError(507, 'insufficient_storage', `the data directory's disk is full; free space and try again (${(error as Error).message})`);
}
