import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, rmSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { publishFile, temporaryPath } from '../state/files.js';

/**
 * torchvision's published ImageNet weights for ResNet-50 (ResNet50_Weights.IMAGENET1K_V2, its
 * DEFAULT), at the URL torchvision itself downloads from. torchvision checks a download by the
 * hash prefix in the file name (`-11ad3fa6.`: the SHA-256 must start with it); Marquee checks
 * the same prefix, and the whole digest when one is configured.
 */
export const TORCHVISION_RESNET50_URL = 'https://download.pytorch.org/models/resnet50-11ad3fa6.pth';

export interface WeightsSource {
  /** URL (http, https) or local path. */
  ref: string;
  /** Full SHA-256 when known; otherwise the file name's hash prefix (torchvision's rule) is required. */
  sha256: string | null;
}

export interface VerifiedWeights {
  path: string;
  sha256: string;
}

/** Why no weights could be had: the reason is what `/ready` and the model record show after "random". */
export class WeightsUnavailable extends Error {
  constructor(
    readonly reason: 'offline' | 'refused' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

/** torchvision's HASH_REGEX (`-([a-f0-9]*)\.`) applied to the file name. */
export function hashPrefix(ref: string): string | null {
  return /-([a-f0-9]+)\./.exec(basename(new URL(ref, 'file:///').pathname))?.[1] ?? null;
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    await pipeline(createReadStream(path), hash);
  } catch (error) {
    throw new WeightsUnavailable('failed', `cannot read ${path}: ${(error as Error).message}`);
  }
  return hash.digest('hex');
}

/** The file at `path`, hashed and checked against `source`'s expected digest (refused when it differs). */
async function verified(path: string, source: WeightsSource, label = path): Promise<VerifiedWeights> {
  const sha256 = await sha256Of(path);
  checkDigest(sha256, source, label);
  return { path, sha256 };
}

function checkDigest(actual: string, source: WeightsSource, label: string): void {
  const prefix = hashPrefix(source.ref);
  const expected = source.sha256?.toLowerCase() ?? null;
  if (expected ? actual !== expected : !prefix || !actual.startsWith(prefix)) {
    const want = expected ?? (prefix ? `a digest starting with ${prefix}` : 'a configured SHA-256 (MARQUEE_BASE_WEIGHTS_SHA256)');
    throw new WeightsUnavailable('refused', `${label}: SHA-256 ${actual} is not ${want}; refusing to load it`);
  }
}

function request(url: string, connectTimeoutMs: number, idleTimeoutMs: number): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(url, { timeout: idleTimeoutMs }, (res) => {
      clearTimeout(connectTimer);
      resolve(res);
    });
    // One attempt with a short deadline for the answer to start: an unreachable host fails fast, once.
    const connectTimer = setTimeout(() => req.destroy(new Error(`no answer within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    req.on('timeout', () => req.destroy(new Error(`stalled for ${idleTimeoutMs} ms`)));
    req.on('error', (error) => {
      clearTimeout(connectTimer);
      reject(error);
    });
  });
}

/**
 * Where a redirect leads, refused when it leaves http(s) or steps down from https to http: the rest
 * of such a download is open to anyone on the path (the hash check catches a changed file only when
 * a full SHA-256 is configured; the name's prefix is 32 bits).
 */
export function redirectTarget(from: string, location: string): string {
  const next = new URL(location, from);
  if (next.protocol !== 'https:' && next.protocol !== 'http:') {
    throw new WeightsUnavailable('refused', `${from} redirects to ${next.protocol} (${next}): only http and https are followed`);
  }
  if (new URL(from).protocol === 'https:' && next.protocol !== 'https:') {
    throw new WeightsUnavailable('refused', `${from} redirects to ${next}: a download begun over https does not go on over http`);
  }
  return next.toString();
}

/**
 * A verified local copy of the weights: a path is checked where it is; a URL is downloaded once
 * into `cacheDir` (to a temporary file, checked, then renamed, so a failed or truncated download
 * leaves nothing behind) and reused on later starts after checking it again.
 */
export async function fetchWeights(
  source: WeightsSource,
  cacheDir: string,
  options: {
    connectTimeoutMs: number;
    idleTimeoutMs?: number;
    redirects?: number;
    /** Read-only directories that may already hold the file (e.g. baked into a Docker image). */
    bakedDirs?: string[];
  },
): Promise<VerifiedWeights> {
  if (!/^https?:\/\//.test(source.ref)) {
    if (!existsSync(source.ref)) throw new WeightsUnavailable('failed', `weights file not found: ${source.ref}`);
    return verified(source.ref, source);
  }
  const name = basename(new URL(source.ref).pathname) || 'weights.pth';
  for (const dir of options.bakedDirs ?? []) {
    const baked = join(dir, name);
    if (existsSync(baked)) return verified(baked, source);
  }
  const cached = join(cacheDir, name);
  if (existsSync(cached)) {
    try {
      return await verified(cached, source);
    } catch {
      rmSync(cached, { force: true }); // a stale or damaged copy: fetch it again
    }
  }
  mkdirSync(cacheDir, { recursive: true });
  const tmp = temporaryPath(cached);
  try {
    let url = source.ref;
    let res: IncomingMessage;
    for (let hop = 0; ; hop++) {
      try {
        res = await request(url, options.connectTimeoutMs, options.idleTimeoutMs ?? 30_000);
      } catch (error) {
        throw new WeightsUnavailable('offline', `could not reach ${url}: ${(error as Error).message}`);
      }
      const location = res.headers.location;
      if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && location && hop < (options.redirects ?? 3)) {
        res.resume();
        url = redirectTarget(url, location);
        continue;
      }
      break;
    }
    if (res.statusCode !== 200) {
      res.resume();
      throw new WeightsUnavailable('failed', `${url} answered HTTP ${res.statusCode}`);
    }
    const expected = Number(res.headers['content-length'] ?? Number.NaN);
    let received = 0;
    res.on('data', (chunk: Buffer) => (received += chunk.length));
    const file = createWriteStream(tmp);
    try {
      await pipeline(res, file);
    } catch (error) {
      // A destroyed stream may still be opening its file: wait, or the file appears after the cleanup below.
      if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()));
      throw new WeightsUnavailable('failed', `download of ${url} broke off after ${received} bytes: ${(error as Error).message}`);
    }
    if (Number.isFinite(expected) && received !== expected) {
      throw new WeightsUnavailable('failed', `download of ${url} is truncated: ${received} of ${expected} bytes`);
    }
    const { sha256 } = await verified(tmp, source, url);
    publishFile(tmp, cached);
    return { path: cached, sha256 };
  } finally {
    rmSync(tmp, { force: true });
  }
}
