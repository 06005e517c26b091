import { createHash } from 'node:crypto';
import sharp, { type Metadata } from 'sharp';
import { ImageError } from '../errors.js';

/**
 * How a picture becomes a model input. Stored with every model version and read by the Python
 * training package (training/preprocess.py), which implements the same steps with PIL.
 */
export interface PreprocessingSpec {
  width: number;
  height: number;
  fit: 'fill';
  kernel: 'lanczos3';
  mean: [number, number, number];
  std: [number, number, number];
  background: [number, number, number];
  colorspace: 'srgb';
  layout: 'NCHW';
}

export function defaultSpec(width: number, height: number): PreprocessingSpec {
  return {
    width,
    height,
    fit: 'fill',
    kernel: 'lanczos3',
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    background: [255, 255, 255],
    colorspace: 'srgb',
    layout: 'NCHW',
  };
}

/** A decoded picture's size and identity, without its pixels. */
export interface Picture {
  width: number;
  height: number;
  /** sha256 over the dimensions and pixels: equal for equal pictures, whatever the file format. */
  pixelSha256: string;
  format: string;
}

/** Decoded, upright, 8-bit sRGB pixels of the first frame, alpha flattened. */
export interface RgbImage extends Picture {
  data: Buffer;
}

/** What an image's header says, read before any pixel is decoded. */
export interface ImageHeader {
  format: string;
  width: number;
  /** Of the first frame. */
  height: number;
  pixels: number;
  channels: number;
  bytesPerSample: number;
}

const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'avif', 'heif', 'tiff']);
const SAMPLE_BYTES: Record<string, number> = { uchar: 1, char: 1, ushort: 2, short: 2, uint: 4, int: 4, float: 4, complex: 8, double: 8, dpcomplex: 16 };

/**
 * Reads and checks an image's header. The pixel limit is checked here, before any pixel is
 * decoded, so a decompression bomb costs nothing.
 */
export async function readHeader(input: Buffer, maxPixels: number): Promise<ImageHeader> {
  if (input.length === 0) throw new ImageError(400, 'empty_file', 'the uploaded file is empty');
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch {
    throw new ImageError(415, 'unsupported_image', 'the file is not an image in a supported format (JPEG, PNG, WebP, GIF, AVIF, TIFF)');
  }
  if (!meta.format || !ACCEPTED_FORMATS.has(meta.format)) {
    throw new ImageError(415, 'unsupported_image', `image format "${meta.format ?? 'unknown'}" is not supported`);
  }
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  const pixels = width * height;
  if (pixels === 0) throw new ImageError(422, 'corrupt_image', 'the image has no pixels');
  if (pixels > maxPixels) {
    throw new ImageError(422, 'too_many_pixels', `the image is ${width}x${height} (${pixels} pixels); the limit is ${maxPixels} pixels`);
  }
  return { format: meta.format, width, height, pixels, channels: meta.channels ?? 4, bytesPerSample: SAMPLE_BYTES[meta.depth ?? ''] ?? 4 };
}

/**
 * The most memory decoding an image takes, from its header: the picture decoded in its own
 * format (channels x sample size: a rotation, an interlaced PNG, WebP and AVIF hold it whole)
 * and the 8-bit RGB it becomes. Measured on a 6000x6000 PNG: 108 MB for the RGB, 207 MB at the
 * peak of a rotated JPEG; this counts 216 MB for either.
 */
export function decodeCost(header: Pick<ImageHeader, 'pixels' | 'channels' | 'bytesPerSample'>): number {
  return header.pixels * (header.channels * header.bytesPerSample + 3);
}

/** Bytes per pixel of a 16-bit RGBA image, the costliest common kind: a decode budget holds one at the pixel limit. */
export const BUDGETED_BYTES_PER_PIXEL = decodeCost({ pixels: 1, channels: 4, bytesPerSample: 2 });

/** Decodes an image, its header checked first. The server decodes through model/decodes.ts, which admits each decode by its cost. */
export async function decodeRgb(
  input: Buffer,
  maxPixels: number,
  background: [number, number, number] = [255, 255, 255],
): Promise<RgbImage> {
  const { format } = await readHeader(input, maxPixels);
  try {
    const [r, g, b] = background;
    const { data, info } = await sharp(input, { limitInputPixels: maxPixels, failOn: 'truncated', pages: 1 })
      .autoOrient()
      .flatten({ background: { r, g, b } })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const rgb = info.channels === 3 ? data : toThreeChannels(data, info.channels);
    const pixelSha256 = createHash('sha256').update(`${info.width}x${info.height}:`).update(rgb).digest('hex');
    return { data: rgb, width: info.width, height: info.height, pixelSha256, format };
  } catch (error) {
    throw new ImageError(422, 'corrupt_image', `the image could not be decoded: ${(error as Error).message}`);
  }
}

/** A picture's size, format and pixel hash; its pixels decoded and dropped. */
export async function identify(input: Buffer, maxPixels: number): Promise<Picture> {
  const { data: _pixels, ...picture } = await decodeRgb(input, maxPixels);
  return picture;
}

function toThreeChannels(data: Buffer, channels: number): Buffer {
  const pixels = data.length / channels;
  const out = Buffer.allocUnsafe(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const grey = channels < 3;
    out[i * 3] = data[i * channels]!;
    out[i * 3 + 1] = data[i * channels + (grey ? 0 : 1)]!;
    out[i * 3 + 2] = data[i * channels + (grey ? 0 : 2)]!;
  }
  return out;
}

/** Resizes decoded pixels to the model's input size: 8-bit RGB, HWC. Training reads these very pixels (see renderModelInput). */
export async function resizeRgb(image: RgbImage, spec: PreprocessingSpec): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(spec.width, spec.height, { fit: spec.fit, kernel: spec.kernel })
    .raw()
    .toBuffer();
}

/** Normalises model-size RGB pixels into a CHW float tensor. */
export function normalise(resized: Buffer, spec: PreprocessingSpec): Float32Array {
  const plane = spec.width * spec.height;
  const tensor = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * spec.std[c]!);
    const shift = spec.mean[c]! / spec.std[c]!;
    const offset = c * plane;
    for (let i = 0; i < plane; i++) tensor[offset + i] = resized[i * 3 + c]! * scale - shift;
  }
  return tensor;
}

export async function toTensor(image: RgbImage, spec: PreprocessingSpec): Promise<Float32Array> {
  return normalise(await resizeRgb(image, spec), spec);
}

/** Decodes and resizes: the model-size pixels and the picture's identity. */
async function resized(input: Buffer, spec: PreprocessingSpec, maxPixels: number): Promise<{ pixels: Buffer; picture: Picture }> {
  const image = await decodeRgb(input, maxPixels, spec.background);
  const { data: _full, ...picture } = image;
  return { pixels: await resizeRgb(image, spec), picture };
}

/**
 * The model input as a lossless PNG: what training reads, so that training and serving see
 * the same pixels (a second resize implementation in Python would differ by rounding).
 */
export async function renderModelInput(input: Buffer, spec: PreprocessingSpec, maxPixels: number): Promise<Buffer> {
  const { pixels } = await resized(input, spec, maxPixels);
  return sharp(pixels, { raw: { width: spec.width, height: spec.height, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

/** The one preprocessing function: bytes in, model input (and the picture's identity) out; the full-size pixels dropped once resized. */
export async function preprocess(input: Buffer, spec: PreprocessingSpec, maxPixels: number): Promise<{ tensor: Float32Array; image: Picture }> {
  const { pixels, picture } = await resized(input, spec, maxPixels);
  return { tensor: normalise(pixels, spec), image: picture };
}
