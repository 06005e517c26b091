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
