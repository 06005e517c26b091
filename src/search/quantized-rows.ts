import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { setImmediate } from 'node:timers/promises';
import usearch from 'usearch';
import { rowDotsCall } from './row-dots.js';
import type { Neighbor } from './vector-index.js';

const MAGIC = 0x3252514d; // "MQR2" little-endian
const HEADER = 16;
const LEVELS = 127;
/** Rows a scan ranks by its coarse layer for the fine layer to rerank, beyond k. */
export const RERANK_EXTRA = 8;
/** How far ahead of the row it copies a gather reads another row, so that their cache and TLB misses overlap. */
const PREFETCH_AHEAD = 32;
/** The largest gather block kept between scans (the exact-scan limit's 20,000 rows of 512 dims fit). */
const KEPT_GATHER_BYTES = 16 << 20;
/** Rows the dot-product kernel takes at a time: its memory, kept between calls, stays near 4.5 MB at 512 dims and 16 vectors. */
const DOT_BLOCK_ROWS = 4096;
/** Bytes a write gathers rows into before each write. */
const WRITE_PIECE = 4 << 20;
/** Bytes a read in pieces reads at a time, and keys it indexes between yields of the thread. */
const READ_PIECE = 4 << 20;
const KEYS_PER_PIECE = 20_000;

/** `values` as int8 into `out` at `offset`, scaled so that the largest is ±127; the scale, or 0 for all zeros. */
function quantizeInto(values: ArrayLike<number>, out: Int8Array, offset: number): number {
  let max = 0;
  for (let d = 0; d < values.length; d++) max = Math.max(max, Math.abs(values[d]!));
  const scale = max > 0 ? LEVELS / max : 0;
  for (let d = 0; d < values.length; d++) out[offset + d] = Math.round(values[d]! * scale);
  return scale;
}

/** What one int8 level of a layer is worth: the inverse of its scale, 0 for a layer of zeros. */
const stepOf = (scale: number): number => (scale > 0 ? 1 / scale : 0);

/**
 * A compact copy of one version's unit vectors, for what the HNSW graph cannot do: an exact scan
 * over the posters a filter leaves, wherever they lie. Each vector is held in two int8 layers, each
 * with its own scale (the largest component at ±127): the coarse layer is the vector's direction to
 * about 1e-3, and is what a scan ranks by (the cosine of int8 rows, usearch's SIMD kernel); the fine
 * layer holds what the coarse one missed, so that the best rows are reranked to float32's precision
 * (distances within about 1e-5) from memory, with no read of SQLite. Half a float32 vector's bytes.
 */
export class QuantizedRows {
  private coarse: Int8Array;
  private fine: Int8Array;
  /** Per row: the coarse layer's scale, then the fine layer's. */
  private scales: Float32Array;
  /** Where a scan gathers its rows, kept between scans: a fresh block per query would churn megabytes. */
  private gathered = new Int8Array(0);
  private readonly rowOf = new Map<number, number>();
  private readonly free: number[] = [];
  private used = 0;
  private readonly residual: Float32Array;
  /** Where a gather leaves its look-ahead reads, so that the compiler keeps them. */
  private touched = 0;

  constructor(
    readonly dims: number,
    capacity = 1024,
  ) {
    this.coarse = new Int8Array(capacity * dims);
    this.fine = new Int8Array(capacity * dims);
    this.scales = new Float32Array(capacity * 2);
    this.residual = new Float32Array(dims);
  }

  get size(): number {
    return this.rowOf.size;
  }

  has(key: number): boolean {
    return this.rowOf.has(key);
  }

  set(key: number, vector: Float32Array): void {
    let row = this.rowOf.get(key);
    if (row === undefined) {
      row = this.free.pop() ?? this.used++;
      if (2 * (row + 1) > this.scales.length) this.grow(Math.max(1024, Math.ceil(0.75 * this.scales.length)));
      this.rowOf.set(key, row);
    }
    const { dims, residual } = this;
    const base = row * dims;
    const coarse = Math.fround(quantizeInto(vector, this.coarse, base)); // as stored: the residual is what that scale misses
    for (let d = 0; d < dims; d++) residual[d] = vector[d]! - (coarse > 0 ? this.coarse[base + d]! / coarse : 0);
    this.scales[2 * row] = coarse;
    this.scales[2 * row + 1] = quantizeInto(residual, this.fine, base);
  }

  delete(key: number): void {
    const row = this.rowOf.get(key);
    if (row === undefined) return;
    this.rowOf.delete(key);
    this.free.push(row);
  }

  /**
   * The k rows among `keys` nearest to a unit query, by Euclidean distance: the best k + 8 by the
   * coarse layer (coarseNearestEach) reranked with both layers.
   */
  nearest(query: Float32Array, k: number, keys: Iterable<number>): Neighbor[] {
    if (k <= 0) return [];
    return this.coarseNearestEach([query], k + RERANK_EXTRA, keys)[0]!
      .map((key) => ({ key, distance: this.distance(this.rowOf.get(key)!, query) }))
      .sort((a, b) => a.distance - b.distance)
      .slice(0, k);
  }

  /**
   * For each unit query, the `count` rows among `keys` most similar to it by the coarse layer (the
   * cosine of int8 rows, to about 1e-3), most similar first, as keys: the rows gathered into one
   * block once and scanned for every query by usearch's native exact search. What a caller scores
   * exactly itself (nearest; best_score, against every example) with the k it wants and some more.
   */
  coarseNearestEach(queries: Float32Array[], count: number, keys: Iterable<number>): number[][] {
    const { dims, coarse } = this;
    const picked: number[] = [];
    const rows: number[] = [];
    for (const key of keys) {
      const row = this.rowOf.get(key);
      if (row === undefined) continue;
      picked.push(key);
      rows.push(row);
    }
    if (picked.length === 0 || count <= 0) return queries.map(() => []);
    const block = this.gatherBlock(rows.length);
    let touched = 0;
    for (let i = 0; i < rows.length; i++) {
      // The rows a filter leaves lie anywhere in hundreds of megabytes, and each copy would wait on
      // its own misses in turn; a read of a row further on overlaps them (a sixth off at a million).
      const ahead = rows[i + PREFETCH_AHEAD];
      if (ahead !== undefined) touched += coarse[ahead * dims]!;
      block.set(coarse.subarray(rows[i]! * dims, (rows[i]! + 1) * dims), i * dims);
    }
    this.touched = touched;
    const q = new Int8Array(queries.length * dims);
    queries.forEach((query, j) => quantizeInto(query, q, j * dims));
    const wanted = Math.min(count, picked.length);
    const found = usearch.exactSearch(block, q, dims, wanted, usearch.MetricKind.Cos, 1);
    const batch = 'counts' in found ? found : { keys: found.keys, counts: [BigInt(found.keys.length)] };
    return queries.map((_, j) => Array.from({ length: Number(batch.counts[j]) }, (_, r) => picked[Number(batch.keys[j * wanted + r])]!));
  }

  /**
   * Room for `count` gathered rows: the block kept between scans, grown as needed up to a cap; a
   * scan past it (the searcher's last resort, over everything a broad filter passes) gets one of its own.
   */
  private gatherBlock(count: number): Int8Array {
    const bytes = count * this.dims;
    if (bytes > KEPT_GATHER_BYTES) return new Int8Array(bytes);
    if (this.gathered.length < bytes) this.gathered = new Int8Array(Math.min(KEPT_GATHER_BYTES, Math.ceil(bytes * 1.5)));
    return this.gathered.subarray(0, bytes);
  }

  /** A row's vector rebuilt from both layers (within about 1e-5 of the float32 one); null for a key it does not hold. */
  vector(key: number): Float32Array | null {
    const row = this.rowOf.get(key);
    if (row === undefined) return null;
    const out = new Float32Array(this.dims);
    this.rebuild(row, out);
    return out;
  }

  /**
   * The dot products of some rows' vectors (both layers, to about 1e-5) with each of some vectors:
   * the rows copied beside the vectors and compared by the WebAssembly kernel of row-dots.wat, for
   * scoring candidates against several examples at once. Row i and vector j at
   * [i * vectors.length + j]; NaN for a key it does not hold.
   */
  dotProducts(keys: number[], vectors: Float32Array[]): Float32Array {
    const { dims, coarse, fine, scales } = this;
    const m = vectors.length;
    const out = new Float32Array(keys.length * m).fill(Number.NaN);
    const at: number[] = [];
    const rows: number[] = [];
    keys.forEach((key, i) => {
      const row = this.rowOf.get(key);
      if (row === undefined) return;
      at.push(i);
      rows.push(row);
    });
    if (rows.length === 0 || m === 0) return out;
    for (let first = 0; first < rows.length; first += DOT_BLOCK_ROWS) {
      const block = rows.slice(first, first + DOT_BLOCK_ROWS);
      const call = rowDotsCall(block.length, m, dims);
      vectors.forEach((vector, j) => call.vectors.set(vector.subarray(0, dims), j * dims));
      block.forEach((row, i) => {
        call.coarse.set(coarse.subarray(row * dims, (row + 1) * dims), i * dims);
        call.fine.set(fine.subarray(row * dims, (row + 1) * dims), i * dims);
        call.steps[2 * i] = stepOf(scales[2 * row]!);
        call.steps[2 * i + 1] = stepOf(scales[2 * row + 1]!);
      });
      const dots = call.run();
      block.forEach((_, i) => out.set(dots.subarray(i * m, (i + 1) * m), at[first + i]! * m));
    }
    return out;
  }

  /** A row's vector from both layers, into `out`. */
  private rebuild(row: number, out: Float32Array): void {
    const { dims, coarse, fine } = this;
    const base = row * dims;
    const coarseStep = stepOf(this.scales[2 * row]!);
    const fineStep = stepOf(this.scales[2 * row + 1]!);
    for (let d = 0; d < dims; d++) out[d] = coarse[base + d]! * coarseStep + fine[base + d]! * fineStep;
  }

  /** Euclidean distance from a row, both layers, to a query. */
  private distance(row: number, query: Float32Array): number {
    const { dims, coarse, fine } = this;
    const base = row * dims;
    const coarseStep = stepOf(this.scales[2 * row]!);
    const fineStep = stepOf(this.scales[2 * row + 1]!);
    let sum = 0;
    for (let d = 0; d < dims; d++) {
      const diff = coarse[base + d]! * coarseStep + fine[base + d]! * fineStep - query[d]!;
      sum += diff * diff;
    }
    return Math.sqrt(sum);
  }

  /**
   * Writes the rows in use to an open file, packed: a 16-byte header (magic, dims, count), the keys
   * as float64, the two scales of each row as float32, then the coarse rows and the fine rows, int8.
   * In pieces of a few megabytes: a million posters' rows are a gigabyte, not to be copied whole.
   */
  write(fd: number): void {
    const { dims } = this;
    const count = this.rowOf.size;
    const header = Buffer.alloc(HEADER);
    header.writeUInt32LE(MAGIC, 0);
    header.writeUInt32LE(dims, 4);
    header.writeUInt32LE(count, 8);
    writeFully(fd, header);
    const rows = [...this.rowOf.values()];
    writeFully(fd, Float64Array.from(this.rowOf.keys()));
    const scales = new Float32Array(2 * count);
    rows.forEach((row, i) => scales.set(this.scales.subarray(2 * row, 2 * row + 2), 2 * i));
    writeFully(fd, scales);
    const piece = new Int8Array(Math.max(1, Math.floor(WRITE_PIECE / dims)) * dims);
    for (const layer of [this.coarse, this.fine]) {
      for (let first = 0; first < count; first += piece.length / dims) {
        const n = Math.min(piece.length / dims, count - first);
        for (let i = 0; i < n; i++) piece.set(layer.subarray(rows[first + i]! * dims, (rows[first + i]! + 1) * dims), i * dims);
        writeFully(fd, piece.subarray(0, n * dims));
      }
    }
  }

  /** Reads a rows file straight into the layers (with room to grow), not through a copy of the whole file. */
  static read(file: string, dims: number): QuantizedRows {
    const fd = openSync(file, 'r');
    try {
      const header = Buffer.alloc(HEADER);
      if (readSync(fd, header, 0, HEADER, 0) !== HEADER || header.readUInt32LE(0) !== MAGIC) throw new Error(`${file}: not a rows file`);
      if (header.readUInt32LE(4) !== dims) throw new Error(`${file}: ${header.readUInt32LE(4)} dims, expected ${dims}`);
      const count = header.readUInt32LE(8);
      const layout = layoutOf(count, dims);
      if (fstatSync(fd).size !== layout.bytes) throw new Error(`${file}: truncated`);
      const rows = new QuantizedRows(dims, headroom(count));
      const keys = new Float64Array(count);
      readFully(fd, keys, HEADER);
      readFully(fd, rows.scales.subarray(0, 2 * count), layout.scales);
      readFully(fd, rows.coarse.subarray(0, count * dims), layout.coarse);
      readFully(fd, rows.fine.subarray(0, count * dims), layout.fine);
      for (let i = 0; i < count; i++) rows.rowOf.set(keys[i]!, i);
      rows.used = count;
      return rows;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * As read, leaving the thread free between pieces of the file (a server's, while it serves):
   * 200,000 rows read at once held it for 0.7 s.
   */
  static async readInPieces(file: string, dims: number): Promise<QuantizedRows> {
    const handle = await open(file, 'r');
    try {
      const header = Buffer.alloc(HEADER);
      if ((await handle.read(header, 0, HEADER, 0)).bytesRead !== HEADER || header.readUInt32LE(0) !== MAGIC) throw new Error(`${file}: not a rows file`);
      if (header.readUInt32LE(4) !== dims) throw new Error(`${file}: ${header.readUInt32LE(4)} dims, expected ${dims}`);
      const count = header.readUInt32LE(8);
      const layout = layoutOf(count, dims);
      if ((await handle.stat()).size !== layout.bytes) throw new Error(`${file}: truncated`);
      const rows = new QuantizedRows(dims, headroom(count));
      const keys = new Float64Array(count);
      await readFullyInPieces(handle, keys, HEADER);
      await readFullyInPieces(handle, rows.scales.subarray(0, 2 * count), layout.scales);
      await readFullyInPieces(handle, rows.coarse.subarray(0, count * dims), layout.coarse);
      await readFullyInPieces(handle, rows.fine.subarray(0, count * dims), layout.fine);
      for (let i = 0; i < count; i++) {
        rows.rowOf.set(keys[i]!, i);
        if (i % KEYS_PER_PIECE === KEYS_PER_PIECE - 1) await setImmediate();
      }
      rows.used = count;
      return rows;
    } finally {
      await handle.close();
    }
  }

  private grow(capacity: number): void {
    const { dims } = this;
    const coarse = new Int8Array(capacity * dims);
    const fine = new Int8Array(capacity * dims);
    const scales = new Float32Array(capacity * 2);
    coarse.set(this.coarse);
    fine.set(this.fine);
    scales.set(this.scales);
    [this.coarse, this.fine, this.scales] = [coarse, fine, scales];
  }
}

/** Room for `count` rows and some more, at a read: a live catalog adds posters, and a growth copies every row. */
const headroom = (count: number): number => Math.max(1024, Math.ceil(count * 1.125));

function writeFully(fd: number, data: ArrayBufferView): void {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

function readFully(fd: number, into: ArrayBufferView, position: number): void {
  const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
  for (let done = 0; done < bytes.length; ) {
    const n = readSync(fd, bytes, done, bytes.length - done, position + done);
    if (n === 0) throw new Error('rows file: truncated');
    done += n;
  }
}

/** Reads a piece at a time, the thread free between them (the read itself runs on libuv's pool). */
async function readFullyInPieces(handle: FileHandle, into: ArrayBufferView, position: number): Promise<void> {
  const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
  for (let done = 0; done < bytes.length; ) {
    const { bytesRead } = await handle.read(bytes, done, Math.min(READ_PIECE, bytes.length - done), position + done);
    if (bytesRead === 0) throw new Error('rows file: truncated');
    done += bytesRead;
  }
}

function layoutOf(count: number, dims: number): { scales: number; coarse: number; fine: number; bytes: number } {
  const scales = HEADER + count * 8;
  const coarse = scales + count * 8;
  const fine = coarse + count * dims;
  return { scales, coarse, fine, bytes: fine + count * dims };
}
