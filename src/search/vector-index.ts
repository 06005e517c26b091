import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import usearch from 'usearch';
import type { EmbeddingSet } from '../state/embeddings.js';
import { temporaryPath, writeAtomically } from '../state/files.js';

const { Index, MetricKind, ScalarKind } = usearch;
type UsearchIndex = InstanceType<typeof Index>;

export interface Neighbor {
  key: number;
  /** Euclidean distance between unit vectors. */
  distance: number;
}

/** What an index file was built from; a mismatch with SQLite means the file is stale. */
interface IndexMeta {
  format: 'marquee-index/1';
  count: number;
  dims: number;
  fingerprint: string;
}

const HNSW = { connectivity: 16, expansionAdd: 128, expansionSearch: 64 };

export function fingerprint(set: EmbeddingSet): string {
  return createHash('sha256')
    .update(Buffer.from(set.keys.buffer, set.keys.byteOffset, set.keys.byteLength))
    .update(Buffer.from(set.vectors.buffer, set.vectors.byteOffset, set.vectors.byteLength))
    .digest('hex');
}

function newIndex(dims: number): UsearchIndex {
  return new Index({
    dimensions: dims,
    metric: MetricKind.L2sq,
    quantization: ScalarKind.F32,
    connectivity: HNSW.connectivity,
    expansion_add: HNSW.expansionAdd,
    expansion_search: HNSW.expansionSearch,
    multi: false,
  });
}

/**
 * A usearch HNSW index over one model version's embeddings, loaded from its file into memory so
 * that posters added to or removed from the live catalog change it in place. The file is derived:
 * a start finds it stale after such changes (its meta no longer matches SQLite) and rebuilds it.
 */
export class VectorIndex {
  private constructor(
    private readonly index: UsearchIndex,
    readonly dims: number,
    readonly rebuilt: boolean,
  ) {}

  get size(): number {
    return Number(this.index.size());
  }

  /** Adds a poster's vector, replacing the one it had. */
  add(key: number, vector: Float32Array): void {
    const id = BigInt(key);
    if (this.index.contains(id)) this.index.remove(id);
    this.index.add(id, vector);
  }

  remove(key: number): void {
    const id = BigInt(key);
    if (this.index.contains(id)) this.index.remove(id);
  }

  /**
   * Maps the index file if it matches the embeddings; otherwise (missing, stale or corrupt)
   * builds it again from them, saves it beside a meta file, and maps the new file.
   */
  static open(file: string, set: EmbeddingSet, onRebuild?: (reason: string) => void): VectorIndex {
    const expected: IndexMeta = { format: 'marquee-index/1', count: set.keys.length, dims: set.dims, fingerprint: fingerprint(set) };
    const reason = VectorIndex.problem(file, expected);
    if (reason) {
      onRebuild?.(reason);
      VectorIndex.build(file, set, expected);
    }
    const index = newIndex(set.dims);
    index.load(file);
    if (index.size() !== expected.count) throw new Error(`index ${file} holds ${index.size()} vectors, expected ${expected.count}`);
    return new VectorIndex(index, set.dims, reason !== null);
  }

  private static problem(file: string, expected: IndexMeta): string | null {
    if (!existsSync(file)) return 'missing';
    const metaFile = `${file}.json`;
    if (!existsSync(metaFile)) return 'no meta file';
    let meta: IndexMeta;
    try {
      meta = JSON.parse(readFileSync(metaFile, 'utf8')) as IndexMeta;
    } catch {
      return 'unreadable meta file';
    }
    if (meta.fingerprint !== expected.fingerprint || meta.count !== expected.count || meta.dims !== expected.dims) return 'stale';
    try {
      const probe = newIndex(expected.dims);
      probe.view(file);
      const size = probe.size();
      if (size !== expected.count) return 'corrupt';
    } catch {
      return 'corrupt';
    }
    return null;
  }

  private static build(file: string, set: EmbeddingSet, meta: IndexMeta): void {
    mkdirSync(dirname(file), { recursive: true });
    const index = newIndex(set.dims);
    if (set.keys.length > 0) {
      const vectors = Array.from({ length: set.keys.length }, (_, i) => set.vectors.subarray(i * set.dims, (i + 1) * set.dims));
      index.add(set.keys, vectors, 0);
    }
    const tmp = temporaryPath(file);
    try {
      index.save(tmp);
      rmSync(`${file}.json`, { force: true });
      renameSync(tmp, file);
      writeAtomically(`${file}.json`, JSON.stringify(meta));
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  search(query: Float32Array, k: number): Neighbor[] {
    const count = Math.min(k, this.size);
    if (count === 0) return [];
    const matches = this.index.search(query, count, 1);
    const out: Neighbor[] = [];
    for (let i = 0; i < matches.keys.length; i++) {
      out.push({ key: Number(matches.keys[i]), distance: Math.sqrt(Math.max(0, matches.distances[i]!)) });
    }
    return out;
  }
}
