import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeRgb, defaultSpec, resizeRgb, type RgbImage } from '../model/preprocess.js';
import { writeAtomically } from '../state/files.js';

/** Hue, saturation, value bins of the colour-histogram baseline. */
export const HSV_BINS = [8, 4, 4] as const;
const [HUE_BINS, SATURATION_BINS, VALUE_BINS] = HSV_BINS;
export const HISTOGRAM_DIMS = HUE_BINS * SATURATION_BINS * VALUE_BINS;
/** Pictures are resized to this before counting (a poster's 2:3), so every picture weighs the same. */
export const HISTOGRAM_SIZE = { width: 100, height: 150 } as const;

/**
 * The picture's HSV colour histogram: bin shares, square-rooted (the Hellinger kernel, so a few
 * dominant colours do not swamp the rest), which also makes it unit length: a dot product is the cosine.
 */
export function hsvHistogram(image: Pick<RgbImage, 'data' | 'width' | 'height'>): Float32Array {
  const counts = new Float64Array(HISTOGRAM_DIMS);
  const { data } = image;
  const pixels = image.width * image.height;
  for (let p = 0; p < pixels; p++) {
    const r = data[p * 3]!;
    const g = data[p * 3 + 1]!;
    const b = data[p * 3 + 2]!;
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    const chroma = max - min;
    let hue = 0; // in sixths of the circle, [0, 6)
    if (chroma > 0) {
      if (max === r) hue = (g - b) / chroma + (g < b ? 6 : 0);
      else if (max === g) hue = (b - r) / chroma + 2;
      else hue = (r - g) / chroma + 4;
    }
    const saturation = max === 0 ? 0 : chroma / max;
    const h = Math.min(HUE_BINS - 1, Math.floor((hue / 6) * HUE_BINS));
    const s = Math.min(SATURATION_BINS - 1, Math.floor(saturation * SATURATION_BINS));
    const v = Math.min(VALUE_BINS - 1, Math.floor((max / 256) * VALUE_BINS));
    counts[(h * SATURATION_BINS + s) * VALUE_BINS + v]! += 1;
  }
  return Float32Array.from(counts, (c) => Math.sqrt(c / (pixels || 1)));
}

/** The baseline's histogram of a decoded picture: resized to HISTOGRAM_SIZE (Lanczos, as serving resizes), then counted. */
export async function baselineHistogram(image: RgbImage): Promise<Float32Array> {
  const { width, height } = HISTOGRAM_SIZE;
  return hsvHistogram({ data: await resizeRgb(image, defaultSpec(width, height)), width, height });
}

const SHA_BYTES = 32;
const RECORD_BYTES = SHA_BYTES + HISTOGRAM_DIMS * 4;

/**
 * Histograms keyed by the picture's pixel sha256, in one binary file under the data dir
 * (eval/hsv-8x4x4-sqrt-100x150.bin): the same picture is never decoded twice, whichever catalog or query set it is in.
 */
export class HistogramCache {
  private changed = false;

  private constructor(
    private readonly file: string,
    private readonly entries: Map<string, Float32Array>,
  ) {}

  static open(dataDir: string): HistogramCache {
    const file = join(dataDir, 'eval', `hsv-${HSV_BINS.join('x')}-sqrt-${HISTOGRAM_SIZE.width}x${HISTOGRAM_SIZE.height}.bin`);
    const entries = new Map<string, Float32Array>();
    if (existsSync(file)) {
      const bytes = readFileSync(file);
      if (bytes.length % RECORD_BYTES === 0) {
        for (let at = 0; at < bytes.length; at += RECORD_BYTES) {
          const sha = bytes.subarray(at, at + SHA_BYTES).toString('hex');
          entries.set(sha, new Float32Array(Uint8Array.prototype.slice.call(bytes, at + SHA_BYTES, at + RECORD_BYTES).buffer));
        }
      }
    }
    return new HistogramCache(file, entries);
  }

  get size(): number {
    return this.entries.size;
  }

  get(pixelSha256: string): Float32Array | undefined {
    return this.entries.get(pixelSha256);
  }

  set(pixelSha256: string, histogram: Float32Array): void {
    this.entries.set(pixelSha256, histogram);
    this.changed = true;
  }

  save(): void {
    if (!this.changed) return;
    const out = Buffer.alloc(this.entries.size * RECORD_BYTES);
    let at = 0;
    for (const [sha, histogram] of this.entries) {
      out.write(sha, at, SHA_BYTES, 'hex');
      Buffer.from(histogram.buffer, histogram.byteOffset, histogram.byteLength).copy(out, at + SHA_BYTES);
      at += RECORD_BYTES;
    }
    writeAtomically(this.file, out);
    this.changed = false;
  }
}

/** Histograms of pictures on disk, from the cache where it has them; decodes four at a time. */
export async function histogramsOf(
  pictures: { path: string; pixelSha256: string }[],
  cache: HistogramCache,
  maxPixels: number,
): Promise<Float32Array> {
  const out = new Float32Array(pictures.length * HISTOGRAM_DIMS);
  let next = 0;
  const worker = async () => {
    while (next < pictures.length) {
      const i = next++;
      const picture = pictures[i]!;
      let histogram = cache.get(picture.pixelSha256);
      if (!histogram) {
        histogram = await baselineHistogram(await decodeRgb(await readFile(picture.path), maxPixels));
        cache.set(picture.pixelSha256, histogram);
      }
      out.set(histogram, i * HISTOGRAM_DIMS);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  cache.save();
  return out;
}
