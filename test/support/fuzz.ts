import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../src/figures/random.js';
import { posterPath, subsetRows } from './catalog.js';
import { ROOT } from './paths.js';

/**
 * A seeded fuzzer of poster uploads: real posters in several formats, mutated in their bytes
 * (truncation, bit flips, edits of format headers and dimension fields, metadata blocks) and in
 * the multipart framing around them (boundaries, part headers, content types). Each case is a
 * complete HTTP request body with its content type, so a failing case can be stored and replayed.
 */

export interface FuzzCase {
  id: string;
  mutation: string;
  contentType: string;
  body: Buffer;
}

export interface FuzzOutcome {
  status: number;
  ms: number;
  /** What is wrong with the answer, if anything (a 5xx, a hang, a body outside the contract). */
  problem: string | null;
}

type Rng = () => number;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, items: readonly T[]): T => items[int(rng, items.length)]!;

/** Offsets worth hitting in each format: chunk/marker headers and the fields that carry dimensions. */
function structuralOffsets(bytes: Buffer): number[] {
  const offsets: number[] = [];
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    for (let at = 8; at + 8 <= bytes.length && offsets.length < 64; ) {
      const length = bytes.readUInt32BE(at);
      offsets.push(at, at + 4, at + 8); // length, type, first data byte (IHDR: width, height)
      at += 12 + length;
    }
  } else if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    for (let at = 2; at + 4 <= bytes.length && offsets.length < 64; ) {
      if (bytes[at] !== 0xff) break;
      const marker = bytes[at + 1]!;
      offsets.push(at, at + 2, at + 5); // marker, segment length, SOF height / APP (EXIF, ICC) payload
      if (marker === 0xda) break; // start of scan: entropy-coded data follows
      at += 2 + bytes.readUInt16BE(at + 2);
    }
  } else if (bytes.subarray(0, 4).toString('latin1') === 'RIFF') {
    offsets.push(4, 12, 16, 20, 26, 28); // RIFF size, chunk type, chunk size, VP8 frame header, dimensions
  } else if (bytes.subarray(0, 3).toString('latin1') === 'GIF') {
    offsets.push(6, 8, 10, 13); // logical screen width, height, flags, colour table
  }
  return offsets.filter((o) => o < bytes.length);
}

const IMAGE_MUTATIONS = ['none', 'truncate', 'bitflip', 'structure', 'dimensions', 'splice', 'zero-block', 'repeat-block', 'garbage'] as const;

function mutateImage(bytes: Buffer, rng: Rng): { bytes: Buffer; mutation: string } {
  const mutation = pick(rng, IMAGE_MUTATIONS);
  const out = Buffer.from(bytes);
  switch (mutation) {
    case 'none':
      return { bytes: out, mutation };
    case 'truncate':
      return { bytes: out.subarray(0, int(rng, out.length)), mutation };
    case 'bitflip': {
      const flips = 1 + int(rng, 16);
      for (let i = 0; i < flips; i++) out[int(rng, out.length)]! ^= 1 << int(rng, 8);
      return { bytes: out, mutation: `${mutation}x${flips}` };
    }
    case 'structure':
    case 'dimensions': {
      const offsets = structuralOffsets(out);
      if (offsets.length === 0) return { bytes: out, mutation: 'none' };
      const at = pick(rng, offsets);
      const value = pick(rng, [0x00, 0xff, 0x7f, 0x80, int(rng, 256)]);
      const span = mutation === 'dimensions' ? 4 : 1 + int(rng, 4);
      out.fill(value, at, Math.min(out.length, at + span));
      return { bytes: out, mutation: `${mutation}@${at}=${value}` };
    }
    case 'splice': {
      const at = int(rng, out.length);
      const extra = Buffer.alloc(1 + int(rng, 64), int(rng, 256));
      return { bytes: Buffer.concat([out.subarray(0, at), extra, out.subarray(at)]), mutation: `${mutation}@${at}` };
    }
    case 'zero-block': {
      const at = int(rng, out.length);
      out.fill(0, at, Math.min(out.length, at + 1 + int(rng, 512)));
      return { bytes: out, mutation: `${mutation}@${at}` };
    }
    case 'repeat-block': {
      const at = int(rng, out.length);
      const block = out.subarray(at, Math.min(out.length, at + 1 + int(rng, 256)));
      return { bytes: Buffer.concat([out.subarray(0, at), block, block, block, out.subarray(at)]), mutation: `${mutation}@${at}` };
    }
    case 'garbage': {
      const junk = Buffer.alloc(1 + int(rng, 2048));
      for (let i = 0; i < junk.length; i++) junk[i] = int(rng, 256);
      return { bytes: junk, mutation };
    }
  }
}

const FRAMINGS = ['plain', 'plain', 'plain', 'no-closing', 'wrong-boundary', 'no-crlf', 'bad-disposition', 'two-images', 'field-first', 'long-header', 'no-filename', 'empty-part', 'lf-only', 'bad-content-type'] as const;

function frame(image: Buffer, rng: Rng): { contentType: string; body: Buffer; framing: string } {
  const boundary = `----fuzz${int(rng, 1e9)}`;
  const framing = pick(rng, FRAMINGS);
  const part = (name: string, data: Buffer, headers = `Content-Disposition: form-data; name="${name}"; filename="p.bin"\r\nContent-Type: application/octet-stream`) =>
    Buffer.concat([Buffer.from(`--${boundary}\r\n${headers}\r\n\r\n`), data, Buffer.from('\r\n')]);
  const close = Buffer.from(`--${boundary}--\r\n`);
  let contentType = `multipart/form-data; boundary=${boundary}`;
  let body: Buffer;
  switch (framing) {
    case 'plain':
      body = Buffer.concat([part('image', image), close]);
      break;
    case 'no-closing':
      body = part('image', image);
      break;
    case 'wrong-boundary':
      body = Buffer.concat([part('image', image), close]);
      contentType = `multipart/form-data; boundary=${boundary}x`;
      break;
    case 'no-crlf':
      body = Buffer.concat([Buffer.from(`--${boundary}Content-Disposition: form-data; name="image"\r\n\r\n`), image, close]);
      break;
    case 'bad-disposition':
      body = Buffer.concat([part('image', image, 'Content-Disposition: form-data; name=image; filename'), close]);
      break;
    case 'two-images':
      body = Buffer.concat([part('image', image), part('image', image), close]);
      break;
    case 'field-first':
      body = Buffer.concat([part('note', Buffer.from('hello'), 'Content-Disposition: form-data; name="note"'), part('image', image), close]);
      break;
    case 'long-header':
      body = Buffer.concat([part('image', image, `Content-Disposition: form-data; name="image"; filename="${'a'.repeat(20_000)}"`), close]);
      break;
    case 'no-filename':
      body = Buffer.concat([part('image', image, 'Content-Disposition: form-data; name="image"'), close]);
      break;
    case 'empty-part':
      body = Buffer.concat([part('image', Buffer.alloc(0)), close]);
      break;
    case 'lf-only':
      body = Buffer.from(Buffer.concat([part('image', image), close]).toString('latin1').replaceAll('\r\n', '\n'), 'latin1');
      break;
    case 'bad-content-type':
      body = Buffer.concat([part('image', image), close]);
      contentType = pick(rng, ['multipart/form-data', 'multipart/form-data; boundary=', 'image/jpeg', 'text/plain', 'multipart/mixed; boundary=x', '']);
      break;
  }
  return { contentType, body, framing };
}

/** The `index`-th case of a run seeded with `seed`: the same case on every machine. */
export function fuzzCase(seed: number, index: number, seeds: { name: string; bytes: Buffer }[]): FuzzCase {
  const rng = seededRandom((seed * 2654435761 + index * 40503) >>> 0);
  const source = pick(rng, seeds);
  const { bytes, mutation } = mutateImage(source.bytes, rng);
  const { contentType, body, framing } = frame(bytes, rng);
  return { id: `${seed}-${index}`, mutation: `${source.name}:${mutation}:${framing}`, contentType, body };
}

/** Sends one case to `url` and judges the answer against the error contract. */
export function sendCase(url: string, fuzz: Pick<FuzzCase, 'contentType' | 'body'>, timeoutMs = 10_000): Promise<FuzzOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const target = new URL(url);
    const headers: Record<string, string | number> = { 'content-length': fuzz.body.length };
    if (fuzz.contentType) headers['content-type'] = fuzz.contentType;
    const req = request({ host: target.hostname, port: target.port, path: target.pathname + target.search, method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const ms = performance.now() - started;
        const status = res.statusCode ?? 0;
        resolve({ status, ms, problem: judge(target.pathname, status, Buffer.concat(chunks).toString('utf8')) });
      });
      res.on('error', (error) => resolve({ status: 0, ms: performance.now() - started, problem: `response broke: ${error.message}` }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (error) => resolve({ status: 0, ms: performance.now() - started, problem: `request failed: ${error.message}` }));
    req.end(fuzz.body);
  });
}

/** What a 200 of each upload route carries (src/http/schemas.ts). */
const SUCCESS_FIELD: Record<string, string> = { '/posters/similar': 'results', '/posters/genre': 'scores', '/posters/embed': 'embedding' };

function judge(path: string, status: number, text: string): string | null {
  if (status >= 500) return `answered ${status}: ${text.slice(0, 200)}`;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return `answered ${status} with a body that is not JSON: ${text.slice(0, 200)}`;
  }
  if (status >= 400) {
    const error = (body as { error?: { code?: unknown; message?: unknown } }).error;
    const keys = Object.keys(body as object);
    if (keys.length !== 1 || !error || typeof error.code !== 'string' || typeof error.message !== 'string') {
      return `answered ${status} outside the error shape: ${text.slice(0, 200)}`;
    }
    return null;
  }
  const field = SUCCESS_FIELD[path];
  if (status === 200 && field && !Array.isArray((body as Record<string, unknown>)[field])) return `answered 200 without ${field}: ${text.slice(0, 200)}`;
  return status === 200 ? null : `unexpected status ${status}`;
}

/**
 * RSS of a process in bytes, from /proc (Linux). Throws where it cannot be read (another system, a
 * process gone): a memory bound that cannot be measured fails, it does not pass.
 */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch((error: Error) => {
    throw new Error(`cannot measure the RSS of process ${pid}: ${error.message}`);
  });
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  if (!kb) throw new Error(`cannot measure the RSS of process ${pid}: no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** Real posters in the formats the API takes, with and without ICC and EXIF blocks. */
export async function fuzzSeeds(count = 3): Promise<{ name: string; bytes: Buffer }[]> {
  const seeds: { name: string; bytes: Buffer }[] = [];
  for (const row of subsetRows({ train: count, val: 0, test: 0 })) {
    const jpeg = readFileSync(posterPath(row.id));
    const image = sharp(jpeg);
    seeds.push(
      { name: `${row.id}.jpg`, bytes: jpeg },
      { name: `${row.id}.png`, bytes: await image.clone().png().toBuffer() },
      { name: `${row.id}.webp`, bytes: await image.clone().webp().toBuffer() },
      { name: `${row.id}.gif`, bytes: await image.clone().gif().toBuffer() },
      {
        name: `${row.id}-icc-exif.jpg`,
        bytes: await image.clone().withIccProfile('p3').withExif({ IFD0: { Orientation: '6', Artist: 'fuzz' } }).jpeg().toBuffer(),
      },
    );
  }
  return seeds;
}

/** Every input that once failed: test/fuzz-corpus/<id>.bin (the request body) + <id>.json (how to send it). */
export const CORPUS = join(ROOT, 'test', 'fuzz-corpus');

export function readCorpus(): FuzzCase[] {
  if (!existsSync(CORPUS)) return [];
  return readdirSync(CORPUS)
    .filter((f) => f.endsWith('.json'))
    .map((f) => {
      const meta = JSON.parse(readFileSync(join(CORPUS, f), 'utf8')) as { content_type: string; mutation: string };
      return { id: f.replace(/\.json$/, ''), mutation: meta.mutation, contentType: meta.content_type, body: readFileSync(join(CORPUS, f.replace(/\.json$/, '.bin'))) };
    });
}

/** Keeps a failing case in the corpus, to be committed with its fix and replayed ever after. */
export function keepInCorpus(fuzz: FuzzCase, problem: string): void {
  mkdirSync(CORPUS, { recursive: true });
  writeFileSync(join(CORPUS, `${fuzz.id}.bin`), fuzz.body);
  const meta = { content_type: fuzz.contentType, mutation: fuzz.mutation, problem, found: new Date().toISOString() };
  writeFileSync(join(CORPUS, `${fuzz.id}.json`), `${JSON.stringify(meta, null, 2)}\n`);
}
