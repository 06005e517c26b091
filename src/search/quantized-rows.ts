import { readFileSync } from 'node:fs';
import usearch from 'usearch';
import type { Neighbor } from './vector-index.js';

const MAGIC = 0x3252514d; // "MQR2" little-endian
const HEADER = 16;
const LEVELS = 127;
/** Rows a scan ranks by its coarse layer for the fine layer to rerank, beyond k. */
const RERANK_EXTRA = 8;
/** How far ahead of the row it copies a gather reads another row, so that their cache and TLB misses overlap. */
const PREFETCH_AHEAD = 16;

/** `values` as int8 into `out` at `offset`, scaled so that the largest is ±127; the scale, or 0 for all zeros. */
function quantizeInto(values: ArrayLike<number>, out: Int8Array, offset: number): number {
  let max = 0;
  for (let d = 0; d < values.length; d++) max = Math.max(max, Math.abs(values[d]!));
  const scale = max > 0 ? LEVELS / max : 0;
  for (let d = 0; d < values.length; d++) out[offset + d] = Math.round(values[d]! * scale);
  return scale;
}

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
  /** Read by gathers so that the engine keeps their look-ahead reads. */
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
      if (2 * (row + 1) > this.scales.length) this.grow(Math.max(1024, this.scales.length));
      this.rowOf.set(key, row);
    }
    const { dims, residual } = this;
    const base = row * dims;
    const coarse = quantizeInto(vector, this.coarse, base);
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
   * The k rows among `keys` nearest to a unit query, by Euclidean distance: the coarse rows gathered
   * into one block and scanned by usearch's native exact search, the best k + 8 of them reranked
   * with both layers.
   */
  nearest(query: Float32Array, k: number, keys: Iterable<number>): Neighbor[] {
    const { dims, coarse } = this;
    const picked: number[] = [];
    const rows: number[] = [];
    for (const key of keys) {
      const row = this.rowOf.get(key);
      if (row === undefined) continue;
      picked.push(key);
      rows.push(row);
    }
    if (picked.length === 0 || k <= 0) return [];
    if (this.gathered.length < rows.length * dims) this.gathered = new Int8Array(Math.ceil(rows.length * 1.5) * dims);
    const block = this.gathered.subarray(0, rows.length * dims);
    for (let i = 0; i < rows.length; i++) {
      // The rows a filter leaves lie anywhere in hundreds of megabytes, and each copy would wait on
      // its own misses in turn; a read of a row further on overlaps them (a third of the time at a million).
      const ahead = rows[i + PREFETCH_AHEAD];
      if (ahead !== undefined) this.touched += coarse[ahead * dims]!;
      block.set(coarse.subarray(rows[i]! * dims, (rows[i]! + 1) * dims), i * dims);
    }
    const q = new Int8Array(dims);
    quantizeInto(query, q, 0);
    const wanted = Math.min(k + RERANK_EXTRA, picked.length);
    const found = usearch.exactSearch(block, q, dims, wanted, usearch.MetricKind.Cos, 1) as InstanceType<typeof usearch.Matches>;
    const best: Neighbor[] = [];
    for (let i = 0; i < found.keys.length; i++) {
      const at = Number(found.keys[i]);
      best.push({ key: picked[at]!, distance: this.distance(rows[at]!, query) });
    }
    return best.sort((a, b) => a.distance - b.distance).slice(0, k);
  }

  /** Euclidean distance from a row, both layers, to a query. */
  private distance(row: number, query: Float32Array): number {
    const { dims, coarse, fine } = this;
    const base = row * dims;
    const c = this.scales[2 * row]!;
    const f = this.scales[2 * row + 1]!;
    const coarseStep = c > 0 ? 1 / c : 0;
    const fineStep = f > 0 ? 1 / f : 0;
    let sum = 0;
    for (let d = 0; d < dims; d++) {
      const diff = coarse[base + d]! * coarseStep + fine[base + d]! * fineStep - query[d]!;
      sum += diff * diff;
    }
    return Math.sqrt(sum);
  }

  /**
   * The rows in use, packed: a 16-byte header (magic, dims, count), the keys as float64, the two
   * scales of each row as float32, then the coarse rows and the fine rows, int8.
   */
  serialize(): Buffer {
    const { dims } = this;
    const count = this.rowOf.size;
    const layout = layoutOf(count, dims);
    const body = new ArrayBuffer(layout.bytes);
    const out = Buffer.from(body);
    out.writeUInt32LE(MAGIC, 0);
    out.writeUInt32LE(dims, 4);
    out.writeUInt32LE(count, 8);
    const keys = new Float64Array(body, HEADER, count);
    const scales = new Float32Array(body, layout.scales, 2 * count);
    const coarse = new Int8Array(body, layout.coarse, count * dims);
    const fine = new Int8Array(body, layout.fine, count * dims);
    let i = 0;
    for (const [key, row] of this.rowOf) {
      keys[i] = key;
      scales.set(this.scales.subarray(2 * row, 2 * row + 2), 2 * i);
      coarse.set(this.coarse.subarray(row * dims, (row + 1) * dims), i * dims);
      fine.set(this.fine.subarray(row * dims, (row + 1) * dims), i * dims);
      i++;
    }
    return out;
  }

  static read(file: string, dims: number): QuantizedRows {
    const bytes = readFileSync(file);
    if (bytes.byteLength < HEADER || bytes.readUInt32LE(0) !== MAGIC) throw new Error(`${file}: not a rows file`);
    if (bytes.readUInt32LE(4) !== dims) throw new Error(`${file}: ${bytes.readUInt32LE(4)} dims, expected ${dims}`);
    const count = bytes.readUInt32LE(8);
    const layout = layoutOf(count, dims);
    if (bytes.byteLength !== layout.bytes) throw new Error(`${file}: truncated`);
    const rows = new QuantizedRows(dims, Math.max(1024, count));
    // Copied: a Buffer read from a file may sit at an offset that is no multiple of 8.
    const at = (offset: number, length: number) => bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + length);
    const keys = new Float64Array(at(HEADER, count * 8));
    rows.scales.set(new Float32Array(at(layout.scales, count * 8)));
    rows.coarse.set(new Int8Array(bytes.buffer, bytes.byteOffset + layout.coarse, count * dims));
    rows.fine.set(new Int8Array(bytes.buffer, bytes.byteOffset + layout.fine, count * dims));
    for (let i = 0; i < count; i++) rows.rowOf.set(keys[i]!, i);
    rows.used = count;
    return rows;
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

function layoutOf(count: number, dims: number): { scales: number; coarse: number; fine: number; bytes: number } {
  const scales = HEADER + count * 8;
  const coarse = scales + count * 8;
  const fine = coarse + count * dims;
  return { scales, coarse, fine, bytes: fine + count * dims };
}
