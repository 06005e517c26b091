import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { errorCodes, type FastifyInstance } from 'fastify';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/server.js';
import { RetrainRunner } from '../src/jobs/retrain.js';
import { createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import { Runtime } from '../src/service/runtime.js';
import { createServices } from '../src/service/startup.js';

type ErrorConstructor = new (...args: unknown[]) => Error & { code: string; statusCode?: number };

/**
 * Every error Fastify and @fastify/multipart can raise, thrown from a route of the real app (in
 * process, through app.inject): each answers in the one shape, a client's error as a 4xx (its
 * own status, 406 as 415, a bad JSON field as 400) and anything else as 500 internal_error, never Fastify's own body.
 */
describe('every framework and plugin error code answers in the one error shape', () => {
  let app: FastifyInstance;
  let thrown: (Error & { statusCode?: number }) | null = null;
  const catalogue: [string, ErrorConstructor][] = [];

  before(async () => {
    const config = loadConfig({ MARQUEE_DATA_DIR: '/nonexistent', MARQUEE_CATALOG: '' });
    const services = await createServices(config, createLogger('silent'), new Metrics(), { inMemory: true });
    const runtime = new Runtime();
    app = await buildApp(services, runtime, new RetrainRunner(services, services.jobs, runtime));
    app.get('/throw', { schema: { hide: true } }, async () => {
      throw thrown;
    });
    await app.ready();
    const multipartErrors = (app as unknown as { multipartErrors: Record<string, ErrorConstructor> }).multipartErrors;
    for (const [name, ctor] of [...Object.entries(errorCodes), ...Object.entries(multipartErrors)]) {
      catalogue.push([name, ctor as unknown as ErrorConstructor]);
    }
  });
  after(() => app.close());

  it('walks them all', async () => {
    assert.ok(catalogue.length > 100, `only ${catalogue.length} error codes found`);
    const seen = new Set<number>();
    for (const [name, Ctor] of catalogue) {
      thrown = new Ctor('a', 'b', 'c');
      const declared = thrown!.statusCode ?? 500;
      const response = await app.inject({ method: 'GET', url: '/throw' });
      const body = response.json() as { error?: { code?: unknown; message?: unknown } };
      assert.deepEqual(Object.keys(body), ['error'], `${name}: ${response.body}`);
      assert.deepEqual(Object.keys(body.error!).sort(), ['code', 'message'], name);
      assert.equal(typeof body.error!.code, 'string', name);
      assert.ok(String(body.error!.message).length > 0, name);
      // A multipart field declared JSON that does not parse is a bad request, whatever the plugin declares (406).
      const want = (thrown as { code?: string }).code === 'FST_INVALID_JSON_FIELD_ERROR' ? 400 : declared >= 400 && declared < 500 ? (declared === 406 ? 415 : declared) : 500;
      assert.equal(response.statusCode, want, `${name} (declared ${declared}) answered ${response.statusCode}`);
      if (want === 500) assert.equal(body.error!.code, 'internal_error', name);
      else assert.notEqual(body.error!.code, 'internal_error', name);
      seen.add(response.statusCode);
    }
    assert.ok(seen.has(500) && seen.has(400) && seen.has(413) && seen.has(415), [...seen].join(','));
  });

  it("answers the router's own errors in the shape too", async () => {
    const long = await app.inject({ method: 'GET', url: `/posters/${'x'.repeat(300)}` });
    assert.equal(long.statusCode, 414);
    assert.equal(long.json().error.code, 'path_too_long');
    const bad = await app.inject({ method: 'GET', url: '/posters/%E0%A4%A' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'bad_url');
  });
});
