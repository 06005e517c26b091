import { ROW_DOTS_WASM } from './row-dots-wasm.js';

/**
 * The dot products of int8 rows (two layers, each with its step) with a few float32 vectors, by the
 * WebAssembly SIMD kernel of row-dots.wat. best_score scores its candidates against every example
 * with it: about 1 µs a row against 5 vectors of 512 dims, where a loop in JavaScript took 8.
 * One instance per thread, its memory grown to the largest call and kept.
 */

const PAGE = 65_536;
/** The kernel loads 16 bytes at a time: each region starts on a 16-byte boundary. */
const ALIGN = 16;

interface Exports {
  memory: WebAssembly.Memory;
  dots(vectors: number, m: number, coarse: number, fine: number, steps: number, n: number, dims: number, scratch: number, out: number): void;
}

/** Where a call's inputs go in the kernel's memory, as views to fill. */
export interface RowDotsCall {
  vectors: Float32Array;
  coarse: Int8Array;
  fine: Int8Array;
  /** Per row: its coarse layer's step, then its fine layer's. */
  steps: Float32Array;
  /** Computes, and returns `out`: row i with vector j at [i * m + j] (valid until the next call). */
  run(): Float32Array;
}

let compiled: WebAssembly.Module | null = null;
let kernel: Exports | null = null;

/** Room for `n` rows of `dims` against `m` vectors: views to fill, then run. */
export function rowDotsCall(n: number, m: number, dims: number): RowDotsCall {
  kernel ??= new WebAssembly.Instance((compiled ??= new WebAssembly.Module(Buffer.from(ROW_DOTS_WASM, 'base64')))).exports as unknown as Exports;
  const { memory, dots } = kernel;
  const aligned = (bytes: number) => Math.ceil(bytes / ALIGN) * ALIGN;
  const vectorsAt = 0;
  const coarseAt = vectorsAt + aligned(m * dims * 4);
  const fineAt = coarseAt + aligned(n * dims);
  const stepsAt = fineAt + aligned(n * dims);
  const scratchAt = stepsAt + aligned(n * 8);
  const outAt = scratchAt + aligned(dims * 4);
  const end = outAt + n * m * 4;
  if (end > memory.buffer.byteLength) memory.grow(Math.ceil((end - memory.buffer.byteLength) / PAGE));
  const { buffer } = memory;
  return {
    vectors: new Float32Array(buffer, vectorsAt, m * dims),
    coarse: new Int8Array(buffer, coarseAt, n * dims),
    fine: new Int8Array(buffer, fineAt, n * dims),
    steps: new Float32Array(buffer, stepsAt, n * 2),
    run: () => {
      dots(vectorsAt, m, coarseAt, fineAt, stepsAt, n, dims, scratchAt, outAt);
      return new Float32Array(buffer, outAt, n * m);
    },
  };
}
