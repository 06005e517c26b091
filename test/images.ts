import { deflateSync } from 'node:zlib';
import sharp from 'sharp';

/** Pictures in every format the API must accept, all made from one real poster. */
export async function variants(jpeg: Buffer) {
  const base = sharp(jpeg);
  const frame = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  const { width, height } = frame.info;
  // Two frames stacked vertically make an animated GIF whose first frame is the poster.
  const flipped = await sharp(jpeg).flip().raw().toBuffer();
  const animated = await sharp(Buffer.concat([frame.data, flipped]), {
    raw: { width, height: height * 2, channels: 3, pageHeight: height },
  })
    .gif()
    .toBuffer();
  return {
    cmyk: await base.clone().toColourspace('cmyk').jpeg().toBuffer(),
    grayscale: await base.clone().greyscale().png().toBuffer(),
    png16: await base.clone().toColourspace('rgb16').png().toBuffer(),
    alpha: await base.clone().ensureAlpha(0.6).png().toBuffer(),
    gif: animated,
    webp: await base.clone().webp({ quality: 95 }).toBuffer(),
    avif: await base.clone().avif({ quality: 80 }).toBuffer(),
    // Stored rotated 90° counter-clockwise with EXIF orientation 6 (display: rotate 90° clockwise).
    exifRotated: await base.clone().rotate(-90).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toBuffer(),
  };
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([length, body, crc]);
}

function crc32(bytes: Buffer): number {
  let crc = ~0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc;
}

/** A valid PNG header declaring width x height, with one row of data: a decompression bomb's shape. */
export function bombPng(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.alloc(1 + width * 3))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
