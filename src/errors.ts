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

/** An error that already says what to answer: an ApiError, or a full disk beneath (507); null for anything else. */
export function answerOf(error: unknown): ApiError | null {
  if (error instanceof ApiError) return error;
  return isStorageFull(error) ? insufficientStorage(error) : null;
}

export function insufficientStorage(error: unknown): ApiError {
  return new ApiError(507, 'insufficient_storage', `the data directory's disk is full; free space and try again (${(error as Error).message})`);
}
