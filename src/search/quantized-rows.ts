import { readFileSync } from 'node:fs';
import usearch from 'usearch';
import type { Neighbor } from './vector-index.js';

const MAGIC = 0x3152514d; // "MQR1" little-endian
const HEADER = 16;
const SCALE = 127;

/** A unit vector's component as int8. */
const quantize = (x: number): number => Math.round(Math.max(-1, Math.min(1, x)) * SCALE);

/**
 * A compact copy of one version's unit vectors, one int8 row per poster (a quarter of float32), for
 * what the HNSW graph cannot do: an exact scan over the posters a filter leaves. Distances from it
 * are approximate (each component within 1/254); the searcher reranks its best rows in float32.
 */
export class QuantizedRows {
  private data: Int8Array;
  /** Where a scan gathers its rows, kept between scans: a fresh block per query would churn megabytes. */
  private gathered = new Int8Array(0);
  private readonly rowOf = new Map<number, number>();
  private readonly free: number[] = [];
  private used = 0;

  constructor(
    readonly dims: number,
    capacity = 1024,
  ) {
    this.data = new Int8Array(capacity * dims);
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
      if ((row + 1) * this.dims > this.data.length) this.grow(Math.max(1024, (2 * this.data.length) / this.dims));
      this.rowOf.set(key, row);
    }
    const base = row * this.dims;
    for (let d = 0; d < this.dims; d++) this.data[base + d] = quantize(vector[d]!);
  }

  delete(key: number): void {
    const row = this.rowOf.get(key);
    if (row === undefined) return;
    this.rowOf.delete(key);
    this.free.push(row);
  }

  /**
   * The `count` rows among `keys` nearest to a unit query, by approximate Euclidean distance: the
   * rows gathered into one block and scanned by usearch's native exact search (SIMD int8).
   */
  nearest(query: Float32Array, count: number, keys: Iterable<number>): Neighbor[] {
    const { dims } = this;
    const picked: number[] = [];
    const rows: number[] = [];
    for (const key of keys) {
      const row = this.rowOf.get(key);
      if (row === undefined) continue;
      picked.push(key);
      rows.push(row);
    }
    if (picked.length === 0 || count <= 0) return [];
    if (this.gathered.length < rows.length * dims) this.gathered = new Int8Array(Math.ceil(rows.length * 1.5) * dims);
    const block = this.gathered.subarray(0, rows.length * dims);
    for (let i = 0; i < rows.length; i++) block.set(this.data.subarray(rows[i]! * dims, (rows[i]! + 1) * dims), i * dims);
    const q = Int8Array.from(query, quantize);
    const found = usearch.exactSearch(block, q, dims, Math.min(count, picked.length), usearch.MetricKind.L2sq, 1) as InstanceType<typeof usearch.Matches>;
    const out: Neighbor[] = [];
    for (let i = 0; i < found.keys.length; i++) {
      out.push({ key: picked[Number(found.keys[i])]!, distance: Math.sqrt(Math.max(0, found.distances[i]!)) / SCALE });
    }
    return out;
  }

  /** The rows in use, packed: a 16-byte header (magic, dims, count), the keys as float64, then the int8 rows. */
  serialize(): Buffer {
    const count = this.rowOf.size;
    const body = new ArrayBuffer(HEADER + count * 8 + count * this.dims);
    const out = Buffer.from(body);
    out.writeUInt32LE(MAGIC, 0);
    out.writeUInt32LE(this.dims, 4);
    out.writeUInt32LE(count, 8);
    const keys = new Float64Array(body, HEADER, count);
    const rows = new Int8Array(body, HEADER + count * 8, count * this.dims);
    let i = 0;
    for (const [key, row] of this.rowOf) {
      keys[i] = key;
      rows.set(this.data.subarray(row * this.dims, (row + 1) * this.dims), i * this.dims);
      i++;
    }
    return out;
  }

  static read(file: string, dims: number): QuantizedRows {
    const bytes = readFileSync(file);
    if (bytes.byteLength < HEADER || bytes.readUInt32LE(0) !== MAGIC) throw new Error(`${file}: not a rows file`);
    if (bytes.readUInt32LE(4) !== dims) throw new Error(`${file}: ${bytes.readUInt32LE(4)} dims, expected ${dims}`);
    const count = bytes.readUInt32LE(8);
    if (bytes.byteLength !== HEADER + count * 8 + count * dims) throw new Error(`${file}: truncated`);
    const rows = new QuantizedRows(dims, Math.max(1024, count));
    // Copied: a Buffer read from a file may sit at an offset that is no multiple of 8.
    const keys = new Float64Array(bytes.buffer.slice(bytes.byteOffset + HEADER, bytes.byteOffset + HEADER + count * 8));
    rows.data.set(new Int8Array(bytes.buffer, bytes.byteOffset + HEADER + count * 8, count * dims));
    for (let i = 0; i < count; i++) rows.rowOf.set(keys[i]!, i);
    rows.used = count;
    return rows;
  }

  private grow(capacity: number): void {
    const data = new Int8Array(capacity * this.dims);
    data.set(this.data);
    this.data = data;
  }
}
