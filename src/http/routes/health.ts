import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';
import { ErrorBody } from '../schemas.js';

/** Any path can be answered 400 bad_url (a path that does not decode), in the one error shape. */
const badRequest = { 400: Type.Ref(ErrorBody) };

export function healthRoutes(app: FastifyInstance, services: Services, runtime: Runtime): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { metrics, catalog } = services;

  api.get(
    '/health',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        operationId: 'getHealth',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ok') }), ...badRequest },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  api.get(
    '/ready',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: a model and its index are loaded',
        operationId: 'getReadiness',
        security: [],
        response: {
          200: Type.Object({
            status: Type.Literal('ready'),
            model_version: Type.String(),
            posters: Type.Integer(),
            provider: Type.String(),
            init: Type.String({ description: 'Where the served model started from: imagenet, random (offline), random (opted out), model, ...' }),
          }),
          503: Type.Object({ status: Type.Literal('not_ready'), reason: Type.String() }),
          ...badRequest,
        },
      },
    },
    async (_request, reply) => {
      const engine = runtime.peek();
      if (!engine || !runtime.ready) return reply.code(503).header('retry-after', '5').send({ status: 'not_ready' as const, reason: runtime.notReadyReason });
      const { source } = engine.model;
      const init = String(source.init_status ?? source.init ?? 'unknown');
      return { status: 'ready' as const, model_version: engine.model.version, posters: engine.searcher.size, provider: engine.embedder.provider, init };
    },
  );

  api.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        operationId: 'getMetrics',
        security: [],
        produces: ['text/plain'],
        response: { 200: Type.String({ description: 'Prometheus text exposition format' }), ...badRequest },
      },
    },
    async (_request, reply) => {
      metrics.catalogSize.set(await catalog.count());
      metrics.queueDepth.set(runtime.peek()?.queueDepth ?? 0);
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );
}
