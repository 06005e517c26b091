import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { decodeRgb, defaultSpec, preprocess } from '../src/model/preprocess.js';
import { bombPng, variants } from './images.js';
import { posterPath } from './support/catalog.js';

const spec = defaultSpec(64, 96);
const poster = readFileSync(posterPath('tt0086425'));

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

describe('preprocessing', () => {
  it('makes a normalised CHW tensor of the spec size', async () => {
    const { tensor, image } = await preprocess(poster, spec, 1e8);
    assert.equal(tensor.length, 3 * 64 * 96);
    assert.deepEqual([image.width, image.height], [203, 300]);
    const max = Math.max(...tensor), min = Math.min(...tensor);
    assert.ok(min >= -0.485 / 0.229 - 1e-5 && max <= (1 - 0.406) / 0.225 + 1e-5, `range ${min}..${max}`);
  });

  it('identifies a picture by its pixels, whatever the container', async () => {
    const a = await decodeRgb(poster, 1e8);
    const png = await decodeRgb((await variants(poster)).png16, 1e8);
    assert.equal(a.pixelSha256, png.pixelSha256);
  });

  it('accepts every format and lands near the original', async () => {
    const original = (await preprocess(poster, spec, 1e8)).tensor;
    for (const [name, bytes] of Object.entries(await variants(poster))) {
      if (name === 'alpha') continue;
      const { tensor, image } = await preprocess(bytes, spec, 1e8);
      assert.deepEqual([image.width, image.height], [203, 300], `${name}: upright size`);
      const similarity = cosine(original, tensor);
      // Lossy re-encodes and colour conversions move pixels a little; a wrong orientation or frame does not stay this close.
      assert.ok(similarity > 0.95, `${name}: cosine ${similarity}`);
    }
  });

  it('takes the first frame of an animated GIF', async () => {
    const gif = await decodeRgb((await variants(poster)).gif, 1e8);
    const first = await decodeRgb(poster, 1e8);
    const second = await decodeRgb(await sharp(poster).flip().png().toBuffer(), 1e8);
    const distance = (a: Buffer, b: Buffer) => a.reduce((sum, v, i) => sum + Math.abs(v - b[i]!), 0) / a.length;
    const toFirst = distance(gif.data, first.data);
    const toSecond = distance(gif.data, second.data);
    assert.ok(toFirst < toSecond / 3, `mean |diff| to frame 1: ${toFirst.toFixed(1)}, to frame 2: ${toSecond.toFixed(1)}`);
  });

  it('flattens transparency over white', async () => {
    const clear = await decodeRgb(await sharp(poster).ensureAlpha(0).png().toBuffer(), 1e8);
    assert.ok(clear.data.every((v) => v === 255));
    const opaque = await decodeRgb(poster, 1e8);
    const half = await decodeRgb((await variants(poster)).alpha, 1e8); // alpha 0.6
    for (const i of [0, 1000, 30000, 90000]) {
      const expected = 0.6 * opaque.data[i]! + 0.4 * 255;
      assert.ok(Math.abs(half.data[i]! - expected) <= 2, `byte ${i}: ${half.data[i]} vs ${expected}`);
    }
  });

  it('rejects a decompression bomb from its header', async () => {
    await assert.rejects(decodeRgb(bombPng(30000, 30000), 40_000_000), { statusCode: 422, code: 'too_many_pixels' });
  });

  it('rejects empty, non-image and truncated files with distinct codes', async () => {
    await assert.rejects(decodeRgb(Buffer.alloc(0), 1e8), { statusCode: 400, code: 'empty_file' });
    await assert.rejects(decodeRgb(Buffer.from('just text, named .jpg'), 1e8), { statusCode: 415, code: 'unsupported_image' });
    await assert.rejects(decodeRgb(poster.subarray(0, poster.length / 2), 1e8), { statusCode: 422, code: 'corrupt_image' });
  });
});
