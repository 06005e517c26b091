import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import type { Precision } from '../state/models.js';
import { writeAtomically } from '../state/files.js';

/**
 * The catalog's embeddings shipped beside a model (`<model dir>/catalog-embeddings.bin`), so that a
 * first start takes them instead of embedding every poster. One file holds one model file's
 * vectors (its sha256), each keyed by the pixel hash of the poster it describes (RgbImage's
 * pixelSha256, as the server computes it when it imports a poster), never by an id: a poster whose
 * picture changed has no vector here and is embedded.
 *
 * Layout: one line of JSON (the header, below) and '\n', then `count` pixel hashes of 32 bytes in
 * ascending order, then `count` vectors of `dims` float32 (little-endian), in the same order.
 * Nothing in it depends on when or where it was written, so the same model and catalog give the
 * same bytes.
 */
export const CATALOG_EMBEDDINGS_FILE = 'catalog-embeddings.bin';

export const CATALOG_EMBEDDINGS_FORMAT = 'marquee-catalog-embeddings/1';

export interface CatalogEmbeddingsHeader {
  format: typeof CATALOG_EMBEDDINGS_FORMAT;
  /** sha256 of the ONNX file (one variant of a model) that computed the vectors. */
  model_sha256: string;
  precision: Precision;
  dims: number;
  count: number;
  vector_type: 'float32';
  /** sha256 of everything after the header line: a damaged file is refused whole. */
  payload_sha256: string;
  /** The catalog it was made from, for people: the server matches posters by pixel hash alone. */
  catalog: { posters: number; movies_csv_sha256: string | null };
}

export class CatalogEmbeddingsError extends Error {}

export interface CatalogEmbeddings {
  header: CatalogEmbeddingsHeader;
  /** The vector of the picture with this pixel hash (hex), or undefined. */
  get(pixelSha256: string): Float32Array | undefined;
}

const HASH_BYTES = 32;
/** Longest header read before the whole file is: far more than any header needs. */
const HEADER_MAX = 64 * 1024;

if (endianness() !== 'LE') throw new Error('catalog embeddings files are little-endian; this machine is not');

/** The header alone (the first line), without reading the vectors. */
export function readCatalogEmbeddingsHeader(file: string): CatalogEmbeddingsHeader {
  const fd = openSync(file, 'r');
  try {
    const start = Buffer.alloc(HEADER_MAX);
    const n = readSync(fd, start, 0, HEADER_MAX, 0);
    return parseHeader(start.subarray(0, n), file).header;
  } finally {
    closeSync(fd);
  }
}

/** The whole file, checked: its format, its size against the header, and its payload's checksum. */
export function readCatalogEmbeddings(file: string): CatalogEmbeddings {
  const bytes = readFileSync(file);
  const { header, payloadStart } = parseHeader(bytes, file);
  const payload = bytes.subarray(payloadStart);
  const expected = header.count * (HASH_BYTES + header.dims * 4);
  if (payload.length !== expected) {
    throw new CatalogEmbeddingsError(`${file} holds ${payload.length} bytes after its header where ${header.count} vectors of ${header.dims} take ${expected}`);
  }
  const checksum = createHash('sha256').update(payload).digest('hex');
  if (checksum !== header.payload_sha256) throw new CatalogEmbeddingsError(`${file} is damaged: its content's sha256 is ${checksum}, its header says ${header.payload_sha256}`);
  const hashes = payload.subarray(0, header.count * HASH_BYTES);
  // A copy: the vectors' offset in the file need not be a multiple of 4.
  const vectors = new Float32Array(Uint8Array.prototype.slice.call(payload, header.count * HASH_BYTES).buffer);
  const rows = new Map<string, number>();
  for (let i = 0; i < header.count; i++) rows.set(hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES).toString('hex'), i);
  if (rows.size !== header.count) throw new CatalogEmbeddingsError(`${file} names a pixel hash twice`);
  return {
    header,
    get(pixelSha256) {
      const row = rows.get(pixelSha256);
      return row === undefined ? undefined : vectors.subarray(row * header.dims, (row + 1) * header.dims);
    },
  };
}

/** Writes the file (atomically): one vector per distinct pixel hash, in hash order. */
export function writeCatalogEmbeddings(
  file: string,
  meta: Pick<CatalogEmbeddingsHeader, 'model_sha256' | 'precision' | 'dims' | 'catalog'>,
  vectors: Map<string, Float32Array>,
): CatalogEmbeddingsHeader {
  const hashes = [...vectors.keys()].sort();
  const hashBytes = Buffer.alloc(hashes.length * HASH_BYTES);
  const vectorBytes = new Float32Array(hashes.length * meta.dims);
  hashes.forEach((hash, i) => {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`"${hash}" is not a sha256 in lower-case hex`);
    const vector = vectors.get(hash)!;
    if (vector.length !== meta.dims) throw new Error(`the vector of ${hash} has ${vector.length} dims, expected ${meta.dims}`);
    hashBytes.write(hash, i * HASH_BYTES, 'hex');
    vectorBytes.set(vector, i * meta.dims);
  });
  const payload = Buffer.concat([hashBytes, Buffer.from(vectorBytes.buffer)]);
  const header: CatalogEmbeddingsHeader = {
    format: CATALOG_EMBEDDINGS_FORMAT,
    model_sha256: meta.model_sha256,
    precision: meta.precision,
    dims: meta.dims,
    count: hashes.length,
    vector_type: 'float32',
    payload_sha256: createHash('sha256').update(payload).digest('hex'),
    catalog: meta.catalog,
  };
  writeAtomically(file, Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), payload]));
  return header;
}

function parseHeader(bytes: Buffer, file: string): { header: CatalogEmbeddingsHeader; payloadStart: number } {
  const end = bytes.indexOf(0x0a);
  if (end < 0 || end >= HEADER_MAX) throw new CatalogEmbeddingsError(`${file} does not start with a header line`);
  let header: CatalogEmbeddingsHeader;
  try {
    header = JSON.parse(bytes.subarray(0, end).toString('utf8')) as CatalogEmbeddingsHeader;
  } catch {
    throw new CatalogEmbeddingsError(`${file} does not start with a JSON header line`);
  }
  if (header?.format !== CATALOG_EMBEDDINGS_FORMAT) throw new CatalogEmbeddingsError(`${file} has format "${String(header?.format)}", expected ${CATALOG_EMBEDDINGS_FORMAT}`);
  if (header.vector_type !== 'float32') throw new CatalogEmbeddingsError(`${file} holds ${String(header.vector_type)} vectors; float32 is read`);
  if (!Number.isSafeInteger(header.count) || header.count < 0 || !Number.isSafeInteger(header.dims) || header.dims < 1) {
    throw new CatalogEmbeddingsError(`${file} has a header without a valid count and dims`);
  }
  return { header, payloadStart: end + 1 };
}
