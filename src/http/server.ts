import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { answerOf, ApiError } from '../errors.js';
import type { Runtime } from '../service/runtime.js';
import type { Services } from '../service/startup.js';
import type { RetrainRunner } from '../jobs/retrain.js';
import { JobBody, ModelBody, RetrainBody } from './admin-schemas.js';
import { NearDuplicateBody } from './duplicate-schemas.js';
import { adminDuplicateRoutes } from './routes/admin-duplicates.js';
import { adminPosterRoutes } from './routes/admin-posters.js';
import { adminRoutes } from './routes/admin.js';
import { CatalogWriter } from '../service/catalog-writes.js';
import { minChangeHook } from './min-change.js';
import { healthRoutes } from './routes/health.js';
import { serverTimeouts } from './timeouts.js';
import { nearDuplicateRoutes } from './routes/near-duplicates.js';
import { posterRoutes } from './routes/posters.js';
import { recommendRoutes } from './routes/recommend.js';
import { BrowseResponse, ErrorBody, GenreResponse, NeighborBody, PosterBody, SimilarResponse, UploadBody } from './schemas.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Route takes a multipart upload: `true` for the image alone, else its body schema (documented as such in OpenAPI). */
    upload?: boolean | Record<string, unknown>;
  }
}

const VERSION = '0.1.0';
/** The demo page: plain HTML, CSS and one JavaScript module, served as they are (no build step). */
const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'public');

function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

/**
 * Maps any error to a status and the one JSON error shape; null for a real server fault (500).
 * Errors of Fastify, its plugins and the libraries beneath carry a status when a client caused
 * them: a 4xx keeps its status under a code of ours, so no client-caused error can be a 500.
 */
export function toApiError(error: FastifyError): ApiError | null {
  const known = answerOf(error);
  if (known) return known;
  if (error.validation) return new ApiError(400, 'invalid_request', error.message);
  switch (error.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new ApiError(414, 'path_too_long', 'a path parameter is longer than the server accepts');
    case 'FST_ERR_BAD_URL':
      return new ApiError(400, 'bad_url', error.message);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_INVALID_JSON_FIELD_ERROR': // a multipart field sent as application/json that does not parse
      return new ApiError(400, 'invalid_request', error.message);
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'file_too_large', error.message);
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'unsupported_media_type', error.message);
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new ApiError(413, 'too_many_parts', error.message);
  }
  const status = error.statusCode ?? 500;
  if (status === 406 || status === 415) return new ApiError(415, 'unsupported_media_type', error.message);
  if (status >= 400 && status < 500) return new ApiError(status, 'bad_request', error.message);
  return null;
}

/** The one place an error becomes a response (the error handler and Fastify's router errors share it). */
function sendError(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const apiError = toApiError(error);
  if (!apiError) {
    request.log.error({ err: error, reqId: request.id }, 'unhandled error');
    return reply.code(500).send(errorBody('internal_error', 'something went wrong on our side'));
  }
  if (apiError.statusCode >= 500) request.log.warn({ code: apiError.code, reqId: request.id }, apiError.message);
  return reply.code(apiError.statusCode).headers(apiError.headers).send(errorBody(apiError.code, apiError.message));
}

/**
 * Swagger UI's requests to the admin routes carry the header that loopback mode asks of admin writes
 * (ADMIN_WRITE_HEADER in admin-auth.ts). It is put into the page as its source text, so it names
 * nothing outside itself.
 */
function sendAdminHeader(request: { url?: string; headers?: Record<string, string> }) {
  if (/^(?:https?:\/\/[^/]+)?\/admin\//.test(request.url ?? '')) request.headers = { ...request.headers, 'X-Marquee-Admin': '1' };
  return request;
}

export async function buildApp(services: Services, runtime: Runtime, runner: RetrainRunner): Promise<FastifyInstance> {
  const { config, log, metrics } = services;
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    ajv: { customOptions: { coerceTypes: true, removeAdditional: false, useDefaults: true } },
    // A bad URL or an over-long path parameter is answered by the router, before any hook: in our shape too.
    frameworkErrors: (error, request, reply) => sendError(error, request, reply),
    // Slow clients are cut off and counted (none of this is limited by default).
    ...serverTimeouts(config, metrics, log),
  });

  for (const schema of [ErrorBody, PosterBody, NeighborBody, RetrainBody, JobBody, ModelBody, NearDuplicateBody]) app.addSchema(schema);
  void SimilarResponse;
  void GenreResponse;
  void BrowseResponse;

  await app.register(multipart, { limits: { fileSize: config.maxUploadBytes } });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Marquee',
        version: VERSION,
        license: { name: 'MIT', identifier: 'MIT' },
        description:
          'Find catalog posters that look like an uploaded one, and guess its genres from a vote of its nearest neighbours. Embeddings come from a ResNet50 metric-learning model; search is HNSW (usearch) over Euclidean distance.',
      },
      tags: [
        { name: 'posters', description: 'Similarity search, genre vote and the catalog' },
        { name: 'operations', description: 'Health, readiness and metrics' },
        { name: 'admin', description: 'Retraining, jobs and model versions (bearer token: MARQUEE_ADMIN_TOKEN)' },
      ],
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
      servers: [{ url: '/', description: 'This server (the API is served at the root of its origin)' }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}` },
    transform: ({ schema, url, route }) => {
      const upload = route.config?.upload;
      if (!upload) return { schema, url };
      return { schema: { ...schema, body: upload === true ? UploadBody : upload }, url };
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { requestInterceptor: sendAdminHeader } });

  app.setErrorHandler((error: FastifyError, request, reply) => sendError(error, request, reply));
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(errorBody('not_found', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );

  app.addHook('onRequest', minChangeHook(config, runtime));
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ route, method: request.method }, reply.elapsedTime / 1000);
  });

  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/demo/', decorateReply: false });
  for (const path of ['/', '/demo']) app.get(path, { schema: { hide: true } }, (_request, reply) => reply.redirect('/demo/'));

  healthRoutes(app, services, runtime);
  posterRoutes(app, services, runtime);
  recommendRoutes(app, services, runtime);
  adminRoutes(app, services, runtime, services.jobs, runner);
  adminPosterRoutes(app, services, new CatalogWriter(services, runtime));
  nearDuplicateRoutes(app, services, runtime);
  adminDuplicateRoutes(app, services, runtime);
  return app;
}
