import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fetchWeights, hashPrefix, TORCHVISION_RESNET50_URL, WeightsUnavailable } from '../src/model/weights.js';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { PYTHON, ROOT } from './support/paths.js';
import { startServer } from './support/server.js';

/**
 * A stand-in for torchvision's weights host on 127.0.0.1: it serves a real torchvision-format
 * ResNet-50 state dict under a name that carries its hash prefix (torchvision's convention),
 * the same bytes under a name whose prefix is wrong, and a download that breaks off.
 */
let host: Server;
let base = '';
let good = '';
let stateDict: Buffer;
const work = mkdtempSync(join(tmpdir(), 'marquee-weights-'));

before(() => {
  const raw = join(work, 'resnet50.pth');
  execFileSync(PYTHON, ['-c', `import torch, torchvision; torch.manual_seed(0); torch.save(torchvision.models.resnet50().state_dict(), ${JSON.stringify(raw)})`], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  stateDict = readFileSync(raw);
  const prefix = createHash('sha256').update(stateDict).digest('hex').slice(0, 8);
  good = `resnet50-${prefix}.pth`;
  renameSync(raw, join(work, good));
  host = createServer((req, res) => {
    const name = basename(req.url ?? '');
    if (name === good || name === 'resnet50-00000000.pth') {
      res.writeHead(200, { 'content-length': stateDict.length }).end(stateDict);
    } else if (name.startsWith('truncated-')) {
      res.writeHead(200, { 'content-length': stateDict.length });
      res.write(stateDict.subarray(0, 1000), () => res.destroy());
    } else if (name === 'moved.pth') {
      res.writeHead(302, { location: `/models/${good}` }).end();
    } else res.writeHead(404).end();
  });
  return new Promise<void>((resolve) => host.listen(0, '127.0.0.1', () => {
    base = `http://127.0.0.1:${(host.address() as AddressInfo).port}/models`;
    resolve();
  }));
});
after(() => host.close());

/** A port nothing listens on: connecting is refused at once. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('ImageNet weights: fetch and check', () => {
  it("reads the hash prefix from the file name as torchvision does", () => {
    assert.equal(hashPrefix(TORCHVISION_RESNET50_URL), '11ad3fa6');
    assert.equal(hashPrefix('/weights/resnet50.pth'), null);
  });

  it('downloads a good file once, checks its hash prefix, and reuses the verified copy', async () => {
    const cache = mkdtempSync(join(work, 'cache-'));
    const first = await fetchWeights({ ref: `${base}/${good}`, sha256: null }, cache, { connectTimeoutMs: 2000 });
    assert.equal(first.path, join(cache, good));
    assert.equal(first.sha256, createHash('sha256').update(stateDict).digest('hex'));
    assert.deepEqual(readdirSync(cache), [good]);
    host.close(); // the second call must not need the host
    try {
      const again = await fetchWeights({ ref: `${base}/${good}`, sha256: first.sha256 }, cache, { connectTimeoutMs: 2000 });
      assert.deepEqual(again, first);
    } finally {
      await new Promise<void>((resolve) => host.listen(Number(new URL(base).port), '127.0.0.1', resolve));
    }
    // a full digest that differs refuses even a file whose name prefix fits
    await assert.rejects(
      fetchWeights({ ref: `${base}/${good}`, sha256: 'f'.repeat(64) }, mkdtempSync(join(work, 'cache-')), { connectTimeoutMs: 2000 }),
      (e: unknown) => e instanceof WeightsUnavailable && e.reason === 'refused',
    );
  });

  it('follows a redirect', async () => {
    const cache = mkdtempSync(join(work, 'cache-'));
    await assert.rejects(fetchWeights({ ref: `${base}/moved.pth`, sha256: null }, cache, { connectTimeoutMs: 2000 }), /refusing/);
    const sha = createHash('sha256').update(stateDict).digest('hex');
    const got = await fetchWeights({ ref: `${base}/moved.pth`, sha256: sha }, cache, { connectTimeoutMs: 2000 });
    assert.equal(got.sha256, sha);
  });

  it('refuses a file whose hash does not match its name, and keeps nothing of it', async () => {
    const cache = mkdtempSync(join(work, 'cache-'));
    await assert.rejects(
      fetchWeights({ ref: `${base}/resnet50-00000000.pth`, sha256: null }, cache, { connectTimeoutMs: 2000 }),
      (e: unknown) => e instanceof WeightsUnavailable && e.reason === 'refused' && /refusing/.test(e.message),
    );
    assert.deepEqual(readdirSync(cache), []);
  });

  it('says "offline" at once when the host cannot be reached', async () => {
    const started = Date.now();
    const port = await closedPort();
    await assert.rejects(
      fetchWeights({ ref: `http://127.0.0.1:${port}/models/${good}`, sha256: null }, mkdtempSync(join(work, 'cache-')), { connectTimeoutMs: 2000 }),
      (e: unknown) => e instanceof WeightsUnavailable && e.reason === 'offline',
    );
    assert.ok(Date.now() - started < 2000, 'one attempt, no retries');
  });

  it('gives up on a truncated download and leaves no partial file', async () => {
    const cache = mkdtempSync(join(work, 'cache-'));
    await assert.rejects(
      fetchWeights({ ref: `${base}/truncated-${good}`, sha256: null }, cache, { connectTimeoutMs: 2000 }),
      (e: unknown) => e instanceof WeightsUnavailable && e.reason === 'failed',
    );
    assert.deepEqual(readdirSync(cache), []);
  });
});

describe('first start: the best model the machine can have', () => {
  const catalog = () => makeCatalogDir(subsetRows({ train: 24, val: 4, test: 4 }));

  it('builds the base model on ImageNet weights fetched from the host', async () => {
    const server = await startServer({
      MARQUEE_CATALOG: catalog(),
      MARQUEE_BASE_WEIGHTS: `${base}/${good}`,
      MARQUEE_BASE_INPUT: '64x96',
    }, { readyTimeoutMs: 300_000 });
    try {
      const ready = (await (await fetch(`${server.url}/ready`)).json()) as { init: string; model_version: string };
      assert.equal(ready.init, 'imagenet');
      assert.match(ready.model_version, /^base-/);
      assert.ok(existsSync(join(server.dataDir, 'weights', good)), 'cached in the data dir');
      assert.match(server.logs(), /ImageNet weights verified/);
    } finally {
      await server.stop();
    }
  });

  for (const [label, weights, reason] of [
    ['offline', async () => `http://127.0.0.1:${await closedPort()}/models/${good}`, 'offline'],
    ['a wrong hash', async () => `${base}/resnet50-00000000.pth`, 'weights refused'],
    ['a truncated download', async () => `${base}/truncated-${good}`, 'weights failed'],
    ['opted out', async () => 'none', 'opted out'],
  ] as const) {
    it(`falls back to the shipped default model, without Python, when ${label}`, async () => {
      const server = await startServer({
        MARQUEE_CATALOG: catalog(),
        MARQUEE_BASE_WEIGHTS: await weights(),
        MARQUEE_DEFAULT_MODEL: testModelDir(),
        MARQUEE_PYTHON: '/nonexistent/python', // serving the shipped model must not need it
      });
      try {
        const ready = (await (await fetch(`${server.url}/ready`)).json()) as { init: string; model_version: string };
        assert.equal(ready.init, `random (${reason})`);
        assert.match(ready.model_version, /^default-/);
        assert.equal(server.logs().split('\n').filter((line) => /no ImageNet weights|ImageNet weights opted out/.test(line)).length, 1, 'one clear line');
        assert.ok(!existsSync(join(server.dataDir, 'weights')) || readdirSync(join(server.dataDir, 'weights')).length === 0);
      } finally {
        await server.stop();
      }
    });
  }
});
