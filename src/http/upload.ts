import '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';

export const IMAGE_FIELD = 'image';

export interface MultipartUpload {
  image: Buffer | null;
  /** The text fields, each with every value sent under its name, in order. */
  fields: Map<string, string[]>;
}

/** Reads a multipart body into memory (nothing touches the disk): the file field `image` within the size limit, and the text fields. */
export async function readMultipart(request: FastifyRequest, maxBytes: number): Promise<MultipartUpload> {
  if (!request.isMultipart()) {
    throw new ApiError(415, 'not_multipart', `send the image as multipart/form-data in a field named "${IMAGE_FIELD}"`);
  }
  let image: Buffer | null = null;
  const otherFiles: string[] = [];
  const fields = new Map<string, string[]>();
  const parts = request.parts({ limits: { fileSize: maxBytes, files: 4, fields: 16, parts: 32 } });
  try {
    for await (const part of parts) {
      if (part.type !== 'file') {
        fields.set(part.fieldname, [...(fields.get(part.fieldname) ?? []), String(part.value)]);
      } else if (part.fieldname === IMAGE_FIELD && image === null) {
        image = await part.toBuffer();
      } else {
        otherFiles.push(part.fieldname);
        part.file.resume();
      }
    }
  } catch (error) {
    // @fastify/multipart's own errors carry their status (413, 400, ...); busboy's parse errors
    // ("Unexpected end of form", "Malformed part header", ...) carry none: all are the client's.
    if (error instanceof ApiError || typeof (error as { statusCode?: unknown }).statusCode === 'number') throw error;
    throw new ApiError(400, 'malformed_multipart', `the multipart body could not be parsed: ${(error as Error).message}`);
  }
  if (image === null && otherFiles.length > 0) {
    throw new ApiError(400, 'wrong_field', `the file must be sent in the field "${IMAGE_FIELD}", not "${otherFiles[0]}"`);
  }
  return { image, fields };
}

/** The uploaded image in the multipart field `image`; 400 when there is none. */
export async function readImageUpload(request: FastifyRequest, maxBytes: number): Promise<Buffer> {
  const { image } = await readMultipart(request, maxBytes);
  if (image !== null) return image;
  throw new ApiError(400, 'no_file', `no file was uploaded: send one in the multipart field "${IMAGE_FIELD}"`);
}

/** A part of a multipart form: a text field's value, or a file's bytes. */
export type FormPart = { field: string; value: string } | { field: string; file: Buffer };

/**
 * Reads a multipart form of several files and text fields into memory, every part in the order
 * sent: files are accepted only in `fileFields`, each within `maxBytes` and all within
 * `maxTotalBytes` (413 `upload_too_large`: what one request may hold in memory). A form past the
 * limits (files, fields, parts) is answered with `tooMany`'s error rather than 413 too_many_parts.
 */
export async function readFormParts(
  request: FastifyRequest,
  options: { maxBytes: number; maxTotalBytes: number; fileFields: string[]; limits: { files: number; fields: number; parts: number }; tooMany: () => ApiError },
): Promise<FormPart[]> {
  const out: FormPart[] = [];
  let total = 0;
  const otherFiles: string[] = [];
  const parts = request.parts({ limits: { fileSize: options.maxBytes, ...options.limits } });
  try {
    for await (const part of parts) {
      if (part.type !== 'file') out.push({ field: part.fieldname, value: String(part.value) });
      else if (options.fileFields.includes(part.fieldname)) {
        const file = await part.toBuffer();
        total += file.length;
        if (total > options.maxTotalBytes) {
          throw new ApiError(413, 'upload_too_large', `the files of one request may hold ${options.maxTotalBytes} bytes in all`);
        }
        out.push({ field: part.fieldname, file });
      }
      else {
        otherFiles.push(part.fieldname);
        part.file.resume();
      }
    }
  } catch (error) {
    if (error instanceof ApiError) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT' || code === 'FST_PARTS_LIMIT') throw options.tooMany();
    if (typeof (error as { statusCode?: unknown }).statusCode === 'number') throw error;
    throw new ApiError(400, 'malformed_multipart', `the multipart body could not be parsed: ${(error as Error).message}`);
  }
  if (otherFiles.length > 0) {
    throw new ApiError(400, 'wrong_field', `files go in the fields ${options.fileFields.map((f) => `"${f}"`).join(' or ')}, not "${otherFiles[0]}"`);
  }
  return out;
}
