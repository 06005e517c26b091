import sharp from 'sharp';

/**
 * A poster's perceptual hash, for finding the same picture re-encoded, resized, cropped, recoloured
 * or framed (bench/results/near-duplicates.md): four 256-bit DCT hashes (pHash with the 16x16
 * lowest frequencies), of the whole picture, of the picture with a uniform border trimmed off (so
 * that a frame added around a poster changes little), and of its centred 95 % and 85 % (so that a
 * cropped copy is close to one of them). Stored per poster as 64 hex digits each.
 */
export interface PerceptualHash {
  whole: string;
  trimmed: string;
  crop95: string;
  crop85: string;
}

/** The picture is brought to at most this many pixels a side before hashing: enough to find a border. */
const WORKING_SIZE = 128;
/** A border pixel differs from the corner's grey by at most this much (of 255). */
const BORDER_TOLERANCE = 20;
/** The DCT's input is the picture averaged onto HASH_INPUT x HASH_INPUT; the hash keeps its HASH_SIDE x HASH_SIDE lowest frequencies. */
const HASH_INPUT = 64;
const HASH_SIDE = 16;
export const HASH_BITS = HASH_SIDE * HASH_SIDE;

/**
 * Decodes the image as the server does (first frame, upright, alpha over white, sRGB) but small
 * (a JPEG shrinks while it decodes), and hashes it. Throws sharp's error for a file it cannot decode.
 */
export async function perceptualHash(bytes: Buffer, maxPixels: number): Promise<PerceptualHash> {
  const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'truncated', pages: 1 })
    .autoOrient()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace('srgb')
    .resize(WORKING_SIZE, WORKING_SIZE, { fit: 'inside', kernel: 'lanczos3' })
    .greyscale()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const grey: Grey = { data, width: info.width, height: info.height, channels: info.channels };
  const { width: w, height: h } = info;
  const centre = (share: number): Box => ({ left: (w * (1 - share)) / 2, top: (h * (1 - share)) / 2, right: (w * (1 + share)) / 2, bottom: (h * (1 + share)) / 2 });
  return {
    whole: dctHash(area(grey, centre(1))),
    trimmed: dctHash(area(grey, innerBox(grey))),
    crop95: dctHash(area(grey, centre(0.95))),
    crop85: dctHash(area(grey, centre(0.85))),
  };
}

interface Grey {
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}
interface Box {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

const at = (g: Grey, x: number, y: number) => g.data[(y * g.width + x) * g.channels]!;

/** The box inside a border of the top-left pixel's grey (the whole picture when there is none, or nothing else). */
function innerBox(g: Grey): Box {
  const background = at(g, 0, 0);
  const differs = (x: number, y: number) => Math.abs(at(g, x, y) - background) > BORDER_TOLERANCE;
  const rowDiffers = (y: number) => {
    for (let x = 0; x < g.width; x++) if (differs(x, y)) return true;
    return false;
  };
  const columnDiffers = (x: number, top: number, bottom: number) => {
    for (let y = top; y < bottom; y++) if (differs(x, y)) return true;
    return false;
  };
  let top = 0;
  while (top < g.height && !rowDiffers(top)) top++;
  if (top === g.height) return { left: 0, top: 0, right: g.width, bottom: g.height };
  let bottom = g.height;
  while (!rowDiffers(bottom - 1)) bottom--;
  let left = 0;
  while (!columnDiffers(left, top, bottom)) left++;
  let right = g.width;
  while (!columnDiffers(right - 1, top, bottom)) right--;
  return { left, top, right, bottom };
}

/** The box's pixels averaged onto a HASH_INPUT x HASH_INPUT grid (each cell the mean of the area it covers). */
function area(g: Grey, box: Box): Float64Array {
  const out = new Float64Array(HASH_INPUT * HASH_INPUT);
  const w = box.right - box.left;
  const h = box.bottom - box.top;
  for (let cy = 0; cy < HASH_INPUT; cy++) {
    const y0 = box.top + (cy * h) / HASH_INPUT;
    const y1 = box.top + ((cy + 1) * h) / HASH_INPUT;
    for (let cx = 0; cx < HASH_INPUT; cx++) {
      const x0 = box.left + (cx * w) / HASH_INPUT;
      const x1 = box.left + ((cx + 1) * w) / HASH_INPUT;
      let sum = 0;
      let weight = 0;
      for (let y = Math.floor(y0); y < Math.ceil(y1); y++) {
        const wy = Math.min(y + 1, y1) - Math.max(y, y0);
        for (let x = Math.floor(x0); x < Math.ceil(x1); x++) {
          const wxy = wy * (Math.min(x + 1, x1) - Math.max(x, x0));
          sum += at(g, x, y) * wxy;
          weight += wxy;
        }
      }
      out[cy * HASH_INPUT + cx] = sum / weight;
    }
  }
  return out;
}

const COSINES = Array.from({ length: HASH_SIDE }, (_, k) =>
  Float64Array.from({ length: HASH_INPUT }, (_, n) => Math.cos((Math.PI / HASH_INPUT) * (n + 0.5) * k)),
);

/** pHash: the lowest HASH_SIDE x HASH_SIDE frequencies of the 2-D DCT-II, each bit whether a coefficient is above their median. */
function dctHash(pixels: Float64Array): string {
  const rows = new Float64Array(HASH_INPUT * HASH_SIDE);
  for (let y = 0; y < HASH_INPUT; y++) {
    for (let k = 0; k < HASH_SIDE; k++) {
      let sum = 0;
      for (let x = 0; x < HASH_INPUT; x++) sum += pixels[y * HASH_INPUT + x]! * COSINES[k]![x]!;
      rows[y * HASH_SIDE + k] = sum;
    }
  }
  const coefficients = new Float64Array(HASH_BITS);
  for (let ky = 0; ky < HASH_SIDE; ky++) {
    for (let kx = 0; kx < HASH_SIDE; kx++) {
      let sum = 0;
      for (let y = 0; y < HASH_INPUT; y++) sum += rows[y * HASH_SIDE + kx]! * COSINES[ky]![y]!;
      coefficients[ky * HASH_SIDE + kx] = sum;
    }
  }
  const sorted = Float64Array.from(coefficients).sort();
  const median = (sorted[HASH_BITS / 2 - 1]! + sorted[HASH_BITS / 2]!) / 2;
  let hex = '';
  for (let nibble = 0; nibble < HASH_BITS / 4; nibble++) {
    let value = 0;
    for (let bit = 0; bit < 4; bit++) value = (value << 1) | (coefficients[nibble * 4 + bit]! > median ? 1 : 0);
    hex += value.toString(16);
  }
  return hex;
}
