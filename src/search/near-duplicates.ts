import { HASH_BITS, type PerceptualHash } from './perceptual-hash.js';

/**
 * When two posters are the same picture (re-encoded, resized, cropped, recoloured or framed), as
 * bench/near-duplicates.ts chose it on the demo catalog: their perceptual hashes within
 * `maxDistance` bits of each other (of 256), by the smallest of the distances between their whole
 * pictures, their trimmed pictures, and either one's whole picture and the other's centred crops.
 */
export const NEAR_DUPLICATE = { maxDistance: 66 } as const;

const WORDS = HASH_BITS / 32;
/** A poster's hashes in the index: whole, trimmed, crop95, crop85, WORDS 32-bit words each. */
export const SLOT = 4 * WORDS;
const [WHOLE, TRIMMED, CROP95, CROP85] = [0, WORDS, 2 * WORDS, 3 * WORDS];
/** The comparisons whose smallest distance is a pair's: [offset in a, offset in b]. Symmetric, so a pair has one distance whichever is asked about. */
const COMPARISONS: [number, number][] = [
  [WHOLE, WHOLE],
  [TRIMMED, TRIMMED],
  [WHOLE, CROP95],
  [CROP95, WHOLE],
  [WHOLE, CROP85],
  [CROP85, WHOLE],
];

/** A picture's hashes as the index keeps them: SLOT 32-bit words. */
export function hashWords(hash: PerceptualHash): Uint32Array {
  const out = new Uint32Array(SLOT);
  [hash.whole, hash.trimmed, hash.crop95, hash.crop85].forEach((hex, part) => {
    for (let w = 0; w < WORDS; w++) out[part * WORDS + w] = Number.parseInt(hex.slice(8 * w, 8 * w + 8), 16) >>> 0;
  });
  return out;
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/**
 * The distance of the pictures whose words start at a[i] and b[j] when it is below `bound`, else
 * some number at least `bound` (each comparison stops once past it).
 */
export function distanceBelow(a: Uint32Array, i: number, b: Uint32Array, j: number, bound: number): number {
  let best = bound;
  for (const [x, y] of COMPARISONS) {
    let d = 0;
    for (let w = 0; w < WORDS && d < best; w++) d += popcount(a[i + x + w]! ^ b[j + y + w]!);
    if (d < best) best = d;
  }
  return best;
}

/** The distance of two pictures' hashes (0..256): the smallest of the comparisons above. */
export function hashDistance(a: PerceptualHash, b: PerceptualHash): number {
  return distanceBelow(hashWords(a), 0, hashWords(b), 0, HASH_BITS + 1);
}

export interface HashMatch {
  key: number;
  distance: number;
}

/**
 * Every catalog poster's perceptual hashes in memory, by poster key, for a scan: 128 bytes a
 * poster (128 MB at a million; a scan's time is in bench/results/near-duplicates.md).
 */
export class PerceptualHashIndex {
  private hashes = new Uint32Array(SLOT * 1024);
  private keys: number[] = [];
  private readonly slots = new Map<number, number>();

  get size(): number {
    return this.keys.length;
  }

  has(key: number): boolean {
    return this.slots.has(key);
  }

  get(key: number): PerceptualHash | null {
    const slot = this.slots.get(key);
    if (slot === undefined) return null;
    const hex = (part: number) =>
      Array.from(this.hashes.subarray(SLOT * slot + part * WORDS, SLOT * slot + (part + 1) * WORDS), (word) => word.toString(16).padStart(8, '0')).join('');
    return { whole: hex(0), trimmed: hex(1), crop95: hex(2), crop85: hex(3) };
  }

  put(key: number, hash: PerceptualHash): void {
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = this.keys.length;
      this.keys.push(key);
      this.slots.set(key, slot);
      if (SLOT * this.keys.length > this.hashes.length) {
        const grown = new Uint32Array(this.hashes.length * 2);
        grown.set(this.hashes);
        this.hashes = grown;
      }
    }
    this.hashes.set(hashWords(hash), SLOT * slot);
  }

  remove(key: number): void {
    const slot = this.slots.get(key);
    if (slot === undefined) return;
    // The last poster moves into the freed slot, so a scan never meets a hole.
    const last = this.keys.length - 1;
    const lastKey = this.keys[last]!;
    this.hashes.copyWithin(SLOT * slot, SLOT * last, SLOT * last + SLOT);
    this.keys[slot] = lastKey;
    this.slots.set(lastKey, slot);
    this.keys.pop();
    this.slots.delete(key);
  }

  /** The posters within `maxDistance` of a picture's hash, nearest first (then by key); `exclude` left out. */
  within(hash: PerceptualHash, maxDistance: number, exclude?: number): HashMatch[] {
    const query = hashWords(hash);
    const found: HashMatch[] = [];
    const n = this.keys.length;
    for (let slot = 0; slot < n; slot++) {
      const distance = distanceBelow(this.hashes, SLOT * slot, query, 0, maxDistance + 1);
      if (distance <= maxDistance && this.keys[slot] !== exclude) found.push({ key: this.keys[slot]!, distance });
    }
    return found.sort((a, b) => a.distance - b.distance || a.key - b.key);
  }

  /**
   * Every pair of posters within `maxDistance` of each other (each pair once, the smaller key
   * first): all pairs are compared, over a copy of the index taken when called, pausing for other
   * work every `rowsPerPause` rows (a catalog of ten thousand posters takes seconds).
   */
  async pairs(maxDistance: number, rowsPerPause = 32): Promise<{ a: number; b: number; distance: number }[]> {
    const keys = [...this.keys];
    const h = this.hashes.slice(0, SLOT * keys.length);
    const found: { a: number; b: number; distance: number }[] = [];
    for (let i = 0; i < keys.length; i++) {
      if (i % rowsPerPause === rowsPerPause - 1) await new Promise((resolve) => setImmediate(resolve));
      for (let j = i + 1; j < keys.length; j++) {
        const distance = distanceBelow(h, SLOT * i, h, SLOT * j, maxDistance + 1);
        if (distance > maxDistance) continue;
        const [a, b] = keys[i]! < keys[j]! ? [keys[i]!, keys[j]!] : [keys[j]!, keys[i]!];
        found.push({ a, b, distance });
      }
    }
    return found;
  }
}
