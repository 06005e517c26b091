// The weights fetch refuses a redirect from https to http (or to anything but http and https), and
// still follows https to https. A stand-in weights host on 127.0.0.1 over https (a certificate made
// for the test with openssl, trusted by this process's https agent) and a plain http one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer, globalAgent } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fetchWeights, redirectTarget, WeightsUnavailable } from '../src/model/weights.js';

const work = mkdtempSync(join(tmpdir(), 'marquee-weights-tls-'));
const bytes = Buffer.from('not really a state dict, but hashed like one');
const sha256 = createHash('sha256').update(bytes).digest('hex');
const plainRequests: string[] = [];
let secure: Server;
let plain: Server;
let secureBase = '';
let plainBase = '';

before(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem')], { stdio: 'ignore' }); // prettier-ignore
  const cert = readFileSync(join(work, 'cert.pem'));
  globalAgent.options.ca = [cert];
  plain = createHttpServer((req, res) => {
    plainRequests.push(req.url ?? '');
    res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
  });
  secure = createHttpsServer({ key: readFileSync(join(work, 'key.pem')), cert }, (req, res) => {
    if (req.url === '/to-http/weights.pth') return res.writeHead(302, { location: `${plainBase}/weights.pth` }).end();
    if (req.url === '/to-https/weights.pth') return res.writeHead(301, { location: '/weights.pth' }).end();
    if (req.url === '/weights.pth') return res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve));
  plainBase = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
  secureBase = `https://127.0.0.1:${(secure.address() as AddressInfo).port}`;
});
after(() => {
  globalAgent.options.ca = undefined;
  plain.close();
  secure.close();
});

describe('the weights fetch and redirects', () => {
  it('refuses a redirect from https to http, and fetches nothing over http', async () => {
    const cache = join(work, 'cache-refused');
    await assert.rejects(
      fetchWeights({ ref: `${secureBase}/to-http/weights.pth`, sha256 }, cache, { connectTimeoutMs: 5000 }),
      (error: unknown) => error instanceof WeightsUnavailable && error.reason === 'refused' && /does not go on over http/.test(error.message),
    );
    assert.deepEqual(plainRequests, []);
    assert.deepEqual(existsSync(cache) ? readdirSync(cache) : [], [], 'nothing is left in the cache');
  });

  it('follows https to https', async () => {
    const fetched = await fetchWeights({ ref: `${secureBase}/to-https/weights.pth`, sha256 }, join(work, 'cache-followed'), { connectTimeoutMs: 5000 });
    assert.equal(fetched.sha256, sha256);
    assert.deepEqual(readFileSync(fetched.path), bytes);
  });

  it('follows http to either, and nothing but http and https', () => {
    assert.equal(redirectTarget('http://a.example/w.pth', 'https://b.example/w.pth'), 'https://b.example/w.pth');
    assert.equal(redirectTarget('http://a.example/x/w.pth', '/y/w.pth'), 'http://a.example/y/w.pth');
    assert.throws(() => redirectTarget('https://a.example/w.pth', 'http://a.example/w.pth'), /does not go on over http/);
    assert.throws(() => redirectTarget('http://a.example/w.pth', 'file:///etc/passwd'), /only http and https are followed/);
  });
});
