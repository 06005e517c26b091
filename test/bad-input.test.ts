import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { bombPng, variants } from './images.js';
import { makeCatalogDir, posterPath, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

const rows = subsetRows({ train: 30, val: 5, test: 5 });
const poster = readFileSync(posterPath(rows[3]!.id));
const MAX_UPLOAD = 1024 * 1024;
let server: RunningServer;
let serverTmp: string;
let tmpAfterStart: string[];

function assertError(result: { status: number; body: any }, status: number, code: string) {
  assert.equal(result.status, status, JSON.stringify(result.body));
  assert.deepEqual(Object.keys(result.body), ['error']);
  assert.deepEqual(Object.keys(result.body.error).sort(), ['code', 'message']);
  assert.equal(result.body.error.code, code);
  assert.ok(result.body.error.message.length > 0);
}

async function post(path: string, body: BodyInit, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, { method: 'POST', body, headers });
  return { status: response.status, body: await response.json(), headers: response.headers };
}

describe('bad input gets a clear 4xx and never hurts the server', () => {
  before(async () => {
    serverTmp = mkdtempSync(join(tmpdir(), 'marquee-server-tmp-'));
    server = await startServer({
      MARQUEE_CATALOG: makeCatalogDir(rows),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
      TMPDIR: serverTmp,
    });
    // onnxruntime leaves files of its own when its session starts; what matters is that requests add none.
    tmpAfterStart = readdirSync(serverTmp).sort();
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
  });

  it('no file, wrong field, empty file', async () => {
    const noFile = new FormData();
    noFile.append('note', 'no image here');
    assertError(await post('/posters/similar', noFile), 400, 'no_file');
    assertError(await upload(`${server.url}/posters/similar`, poster, { field: 'poster' }), 400, 'wrong_field');
    assertError(await upload(`${server.url}/posters/genre`, Buffer.alloc(0)), 400, 'empty_file');
    assertError(await post('/posters/similar', JSON.stringify({ image: 'x' }), { 'content-type': 'application/json' }), 415, 'not_multipart');
  });

  it('text named .jpg, truncated JPEG, decompression bomb, oversized upload', async () => {
    assertError(await upload(`${server.url}/posters/similar`, Buffer.from('I am a text file.\n'), { filename: 'poster.jpg' }), 415, 'unsupported_image');
    assertError(await upload(`${server.url}/posters/similar`, poster.subarray(0, Math.floor(poster.length * 0.6))), 422, 'corrupt_image');
    assertError(await upload(`${server.url}/posters/similar`, bombPng(30000, 30000), { type: 'image/png' }), 422, 'too_many_pixels');
    assertError(await upload(`${server.url}/posters/similar`, Buffer.alloc(MAX_UPLOAD + 1, 0xff)), 413, 'file_too_large');
  });

  it('k out of range or not a number', async () => {
    for (const k of ['0', '101', '-1', 'abc', '2.5']) {
      assertError(await upload(`${server.url}/posters/similar?k=${k}`, poster), 400, 'invalid_request');
    }
    assertError(await upload(`${server.url}/posters/genre?k=51`, poster), 400, 'invalid_request');
    assertError(await upload(`${server.url}/posters/similar?year_from=2000&year_to=1990`, poster), 400, 'invalid_request');
    const largest = await upload(`${server.url}/posters/similar?k=100`, poster);
    assert.equal(largest.status, 200, 'k=100 is allowed');
    assert.equal(largest.body.results.length, rows.length, 'k larger than the catalog returns the whole catalog');
  });

  it('unknown poster and unknown route', async () => {
    const missing = await fetch(`${server.url}/posters/tt0000000`);
    assertError({ status: missing.status, body: await missing.json() }, 404, 'not_found');
    const image = await fetch(`${server.url}/posters/tt0000000/image`);
    assertError({ status: image.status, body: await image.json() }, 404, 'not_found');
    const route = await fetch(`${server.url}/nope`);
    assertError({ status: route.status, body: await route.json() }, 404, 'not_found');
  });

  it('a multipart body that ends before its closing boundary, or with a broken part header', async () => {
    const boundary = '----marquee-test';
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
    const type = { 'content-type': `multipart/form-data; boundary=${boundary}` };
    const truncated = Buffer.concat([Buffer.from(head), poster.subarray(0, 5000)]);
    assertError(await post('/posters/similar', truncated, type), 400, 'malformed_multipart');
    const broken = Buffer.from(`--${boundary}\r\nContent-Disposition form-data name\r\n\r\nx\r\n--${boundary}--\r\n`);
    const result = await post('/posters/similar', broken, type);
    assert.ok(result.status >= 400 && result.status < 500, JSON.stringify(result.body));
    assert.deepEqual(Object.keys(result.body.error).sort(), ['code', 'message']);
  });

  it('a path parameter over the length limit, a bad URL, a cursor this server did not make', async () => {
    const long = await fetch(`${server.url}/posters/${'t'.repeat(500)}`);
    assertError({ status: long.status, body: await long.json() }, 414, 'path_too_long');
    const badUrl = await fetch(`${server.url}/posters/%E0%A4%A`);
    assertError({ status: badUrl.status, body: await badUrl.json() }, 400, 'bad_url');
    for (const cursor of ['%25%25', 'tt0000001', 'c1.!!!', `c1.${Buffer.from('{"after":3}').toString('base64url')}`]) {
      const page = await fetch(`${server.url}/posters?cursor=${encodeURIComponent(cursor)}`);
      assertError({ status: page.status, body: await page.json() }, 400, 'invalid_cursor');
    }
  });

  it('accepts CMYK, grayscale, 16-bit, alpha, animated GIF, WebP, AVIF and EXIF-rotated images', async () => {
    const reference = (await upload(`${server.url}/posters/embed`, poster)).body.embedding as number[];
    const lossless: Record<string, Buffer> = {
      png16: (await variants(poster)).png16,
      webpLossless: await sharp(poster).webp({ lossless: true }).toBuffer(),
      // Stored lying on its side, upright only if the EXIF orientation is applied.
      exifRotatedPng: await sharp(poster).rotate(-90).withMetadata({ orientation: 6 }).png().toBuffer(),
    };
    for (const [name, bytes] of Object.entries(lossless)) {
      const { status, body } = await upload(`${server.url}/posters/embed`, bytes, { filename: `p.${name}` });
      assert.equal(status, 200, `${name}: ${JSON.stringify(body)}`);
      assert.equal(body.catalog_match?.id, rows[3]!.id, `${name}: decodes to exactly the catalog poster's pixels`);
      const cosine = body.embedding.reduce((sum: number, v: number, i: number) => sum + v * reference[i]!, 0);
      assert.ok(cosine > 0.99999, `${name}: same pixels, same embedding (cosine ${cosine})`);
    }
    // Lossy formats move pixels; a randomly initialised network magnifies that, so closeness of the
    // decoded pixels is checked in preprocess.test.ts and here each must embed to a unit vector.
    for (const [name, bytes] of Object.entries(await variants(poster))) {
      const { status, body } = await upload(`${server.url}/posters/embed`, bytes, { filename: `p.${name}` });
      assert.equal(status, 200, `${name}: ${JSON.stringify(body)}`);
      const norm = Math.sqrt(body.embedding.reduce((sum: number, v: number) => sum + v * v, 0));
      assert.ok(Math.abs(norm - 1) < 1e-4, `${name}: norm ${norm}`);
      const similar = await upload(`${server.url}/posters/similar?k=3`, bytes);
      assert.equal(similar.status, 200);
      assert.equal(similar.body.results.length, 3);
    }
  });

  it('is still serving, stored nothing new and left no temporary file', async () => {
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const { status, body } = await upload(`${server.url}/posters/similar?k=4`, poster);
    assert.equal(status, 200);
    assert.equal(body.results.length, 4);
    const ready = (await (await fetch(`${server.url}/ready`)).json()) as { posters: number };
    assert.equal(ready.posters, rows.length);
    assert.deepEqual(readdirSync(serverTmp).sort(), tmpAfterStart);
  });
});
