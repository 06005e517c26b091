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

/** Decoded, upright, 8-bit sRGB pixels of the first frame, alpha flattened. */
export interface RgbImage {
  data: Buffer;
  width: number;
  height: number;
  /** sha256 over the dimensions and pixels: equal for equal pictures, whatever the file format. */
  pixelSha256: string;
  format: string;
}

const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'avif', 'heif', 'tiff']);

/**
 * Decodes an image. The pixel limit is checked on the header alone, before any pixel is decoded,
 * so a decompression bomb costs nothing.
 */
export async function decodeRgb(
  input: Buffer,
  maxPixels: number,
  background: [number, number, number] = [255, 255, 255],
): Promise<RgbImage> {
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
  const pixels = (meta.width ?? 0) * (meta.pageHeight ?? meta.height ?? 0);
  if (pixels === 0) throw new ImageError(422, 'corrupt_image', 'the image has no pixels');
  if (pixels > maxPixels) {
    throw new ImageError(
      422,
      'too_many_pixels',
      `the image is ${meta.width}x${meta.pageHeight ?? meta.height} (${pixels} pixels); the limit is ${maxPixels} pixels`,
    );
  }
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
    return { data: rgb, width: info.width, height: info.height, pixelSha256, format: meta.format };
  } catch (error) {
    throw new ImageError(422, 'corrupt_image', `the image could not be decoded: ${(error as Error).message}`);
  }
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

/**
 * The model input as a lossless PNG: what training reads, so that training and serving see
 * the same pixels (a second resize implementation in Python would differ by rounding).
 */
export async function renderModelInput(input: Buffer, spec: PreprocessingSpec, maxPixels: number): Promise<Buffer> {
  const image = await decodeRgb(input, maxPixels, spec.background);
  return sharp(await resizeRgb(image, spec), { raw: { width: spec.width, height: spec.height, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

/** The one preprocessing function: bytes in, model input (and the picture's identity) out. */
export async function preprocess(
  input: Buffer,
  spec: PreprocessingSpec,
  maxPixels: number,
): Promise<{ tensor: Float32Array; image: RgbImage }> {
  const image = await decodeRgb(input, maxPixels, spec.background);
  return { tensor: await toTensor(image, spec), image };
}
