import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';

export function healthRoutes(app: FastifyInstance, services: Services, runtime: Runtime): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { metrics, catalog } = services;

  api.get(
    '/health',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
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
        response: {
          200: Type.Object({ status: Type.Literal('ready'), model_version: Type.String(), posters: Type.Integer(), provider: Type.String() }),
          503: Type.Object({ status: Type.Literal('not_ready'), reason: Type.String() }),
        },
      },
    },
    async (_request, reply) => {
      const engine = runtime.peek();
      if (!engine) return reply.code(503).header('retry-after', '5').send({ status: 'not_ready' as const, reason: runtime.notReadyReason });
      return { status: 'ready' as const, model_version: engine.model.version, posters: engine.searcher.size, provider: engine.embedder.provider };
    },
  );

  api.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        produces: ['text/plain'],
        response: { 200: Type.String({ description: 'Prometheus text exposition format' }) },
      },
    },
    async (_request, reply) => {
      metrics.catalogSize.set(catalog.count());
      metrics.queueDepth.set(runtime.peek()?.queueDepth ?? 0);
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );
}
