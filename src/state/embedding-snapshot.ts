import type { EmbeddingSource } from '../search/vector-index.js';
import type { EmbeddingSet } from './embeddings.js';

/**
 * A variant's embeddings read at one moment (a PostgreSQL snapshot), as what its vector index is
 * derived from. Positions are transaction horizons: `lastChange` is the snapshot's horizon, below
 * which every writer had finished; a change by transaction t is at position t + 1, so an index
 * holding position h replays the changes of transactions ≥ h (some of them already in the rows,
 * replayed again to the same vector). Nothing is pruned: the log is the database's.
 */
export class RowsSource implements EmbeddingSource {
  private rowOf: Map<number, number> | null = null;

  constructor(
    private rows: EmbeddingSet,
    private readonly horizon: number,
    /** Each poster's latest change's position (its writer's transaction id + 1). */
    private changed: ReadonlyMap<number, number> = new Map(),
  ) {}

  /** Every row, where the snapshot had read only the changed posters' (a build needs them all); the changes stay. */
  holdRows(rows: EmbeddingSet): void {
    this.rows = rows;
    this.rowOf = null;
  }

  /** The rows and changes are no longer needed (the index that read them is open); the position stays. */
  release(): void {
    this.rows = { keys: new BigUint64Array(0), vectors: new Float32Array(0), dims: this.rows.dims };
    this.changed = new Map();
    this.rowOf = null;
  }

  get dims(): number {
    return this.rows.dims;
  }

  lastChange(): number {
    return this.horizon;
  }

  *changedSince(seq: number): Iterable<{ key: number; vector: Float32Array | null }> {
    this.rowOf ??= new Map(Array.from(this.rows.keys, (key, i) => [Number(key), i]));
    for (const [key, at] of this.changed) {
      if (at <= seq) continue;
      const row = this.rowOf.get(key);
      yield { key, vector: row === undefined ? null : this.rows.vectors.subarray(row * this.dims, (row + 1) * this.dims) };
    }
  }

  *batches(size: number): Iterable<EmbeddingSet> {
    const { keys, vectors, dims } = this.rows;
    for (let start = 0; start < keys.length; start += size) {
      const end = Math.min(start + size, keys.length);
      yield { keys: keys.subarray(start, end), vectors: vectors.subarray(start * dims, end * dims), dims };
    }
  }

  changesSince(seq: number): number {
    let n = 0;
    for (const at of this.changed.values()) if (at > seq) n++;
    return n;
  }

  pruneChanges(): void {}

  async pruneChangesInPieces(): Promise<void> {}

  prunedThrough(): number {
    return 0;
  }
}
