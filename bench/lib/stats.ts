/** Timing and summary helpers shared by the benchmark sections. */

export interface Summary {
  /** How many timed repetitions the figures come from (warm-up excluded). */
  reps: number;
  median: number;
  mean: number;
  p10: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

/** Linear-interpolated percentile of an ascending array; q in 0..1. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function summarise(samples: number[]): Summary {
  const sorted = Float64Array.from(samples).sort();
  const sum = samples.reduce((a, b) => a + b, 0);
  return {
    reps: samples.length,
    median: percentile(sorted, 0.5),
    mean: samples.length ? sum / samples.length : Number.NaN,
    p10: percentile(sorted, 0.1),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

export interface RepeatOptions {
  warmup: number;
  minReps: number;
  maxReps: number;
  /** Keep repeating (past minReps) until this much timed work has been done. */
  minSeconds: number;
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Runs fn `warmup` times untimed, then times it until both minReps and minSeconds are reached. Returns ms per call. */
export async function repeat(fn: () => Promise<unknown>, options: RepeatOptions): Promise<Summary> {
  for (let i = 0; i < options.warmup; i++) await fn();
  const samples: number[] = [];
  const begun = nowMs();
  while (samples.length < options.maxReps && (samples.length < options.minReps || nowMs() - begun < options.minSeconds * 1000)) {
    const t0 = nowMs();
    await fn();
    samples.push(nowMs() - t0);
  }
  return summarise(samples);
}

export function ratio(a: number, b: number): number {
  return b === 0 ? Number.NaN : a / b;
}
