import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ApiError, notFound } from '../../errors.js';
import type { RetrainRunner } from '../../jobs/retrain.js';
import { bringIntoService } from '../../service/activation.js';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';
import type { Job, JobStore } from '../../state/jobs.js';
import type { ModelVersion } from '../../state/models.js';
import { adminAuth } from '../admin-auth.js';
import { JobBody, JobParams, ModelBody, RetrainBody, VersionParams } from '../admin-schemas.js';
import { ErrorBody } from '../schemas.js';
import { keepOpenWhileWorking } from '../timeouts.js';

function jobView(job: Job) {
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    params: job.params,
    progress: job.progress,
    metrics: job.metrics,
    model_version: job.modelVersion,
    error: job.error,
    log_tail: job.logTail,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
    finished_at: job.finishedAt,
  };
}

function modelView(model: ModelVersion, activeVersion: string | null) {
  return {
    version: model.version,
    active: model.version === activeVersion,
    created_at: model.createdAt,
    dims: model.dims,
    input: { width: model.inputWidth, height: model.inputHeight },
    precision: model.precision,
    variants: model.variants,
    file_sha256: model.fileSha256,
    source: model.source,
    metrics: model.metrics,
  };
}

const errors = { 401: Type.Ref(ErrorBody), 403: Type.Ref(ErrorBody) };
const security = [{ bearerAuth: [] }];

export function adminRoutes(app: FastifyInstance, services: Services, runtime: Runtime, jobs: JobStore, runner: RetrainRunner): void {
  void app.register(async (admin) => {
    admin.addHook('onRequest', adminAuth(services.config));
    const { evaluations } = services;
    const api = admin.withTypeProvider<TypeBoxTypeProvider>();

    api.post(
      '/admin/retrain',
      {
        schema: {
          tags: ['admin'],
          summary: 'Fine-tune the embedding model on the catalog, then swap it in if it is better',
          operationId: 'startRetrain',
          description:
            'Starts a job (202, Location: /admin/jobs/{id}); 409 while another runs. The candidate is evaluated on the val split against the active model and activated only if its genre vote ranks val posters better by genre (vote mAP, k=5; or `force`), else the job ends `rejected` with both figures. The swap is atomic for requests: those in flight finish on the old model.',
          security,
          body: Type.Ref(RetrainBody),
          response: { 202: Type.Ref(JobBody), 400: Type.Ref(ErrorBody), 409: Type.Ref(ErrorBody), 507: Type.Ref(ErrorBody), ...errors },
        },
      },
      async (request, reply) => {
        if (!runtime.peek()) throw new ApiError(503, 'not_ready', 'the service is still starting', { 'retry-after': '5' });
        const job = await runner.start((request.body ?? {}) as RetrainBody);
        return reply.code(202).header('location', `/admin/jobs/${job.id}`).send(jobView(job));
      },
    );

    api.get(
      '/admin/jobs',
      {
        schema: {
          tags: ['admin'],
          summary: 'Recent jobs, newest first',
          operationId: 'listJobs',
          security,
          querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })) }),
          response: { 200: Type.Object({ jobs: Type.Array(Type.Ref(JobBody)) }), ...errors },
        },
      },
      async (request) => ({ jobs: (await jobs.list(request.query.limit ?? 50)).map(jobView) }),
    );

    api.get(
      '/admin/jobs/:id',
      {
        schema: {
          tags: ['admin'],
          summary: "A job's state, progress, metrics and log tail",
          operationId: 'getJob',
          security,
          params: JobParams,
          response: { 200: Type.Ref(JobBody), 404: Type.Ref(ErrorBody), ...errors },
        },
      },
      async (request) => {
        const job = await jobs.get(request.params.id);
        if (!job) throw notFound(`job ${request.params.id}`);
        return jobView(job);
      },
    );

    api.delete(
      '/admin/jobs/:id',
      {
        schema: {
          tags: ['admin'],
          summary: 'Cancel a running job: its training process is stopped and its temporary files removed',
          operationId: 'cancelJob',
          security,
          params: JobParams,
          response: { 202: Type.Ref(JobBody), 404: Type.Ref(ErrorBody), 409: Type.Ref(ErrorBody), ...errors },
        },
      },
      async (request, reply) => reply.code(202).send(jobView(await runner.cancel(request.params.id))),
    );

    api.get(
      '/admin/models',
      {
        schema: {
          tags: ['admin'],
          summary: 'Model versions with their metrics, and which one is active',
          operationId: 'listModels',
          security,
          response: { 200: Type.Object({ active: Type.Union([Type.String(), Type.Null()]), models: Type.Array(Type.Ref(ModelBody)) }), ...errors },
        },
      },
      async () => {
        const active = (await services.models.active())?.version ?? null;
        return { active, models: (await services.models.list()).map((m) => modelView(m, active)) };
      },
    );

    api.get(
      '/admin/models/:version/report',
      {
        schema: {
          tags: ['admin'],
          summary: "The version's latest stored evaluation (marquee eval): the JSON document, or Markdown with format=md",
          operationId: 'getModelReport',
          description:
            'Written by every `marquee eval` run of the version (the latest one is kept); 404 until one has run. The JSON document is the one `marquee eval --json` writes, byte for byte. X-Catalog-Stale: true when the catalog has changed since it was measured (X-Catalog-Fingerprint names the state it measured).',
          security,
          params: VersionParams,
          querystring: Type.Object({
            format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('md')], { default: 'json', description: 'json (default) or md' })),
          }),
          response: {
            200: {
              description: 'The evaluation report (format marquee-eval/1), or its Markdown with format=md',
              content: {
                'application/json': { schema: Type.Record(Type.String(), Type.Unknown()) },
                'text/markdown': { schema: Type.String() },
              },
            },
            404: Type.Ref(ErrorBody),
            ...errors,
          },
        },
      },
      async (request, reply) => {
        const { version } = request.params;
        if (!(await services.models.get(version))) throw notFound(`model version ${version}`);
        const stored = await evaluations.latest(version);
        if (!stored) throw notFound(`an evaluation of ${version} (run marquee eval --version ${version})`);
        // Whether the catalog has changed since (posters added, removed, re-pictured or re-labelled).
        reply.header('x-catalog-fingerprint', stored.catalogFingerprint ?? 'unknown');
        reply.header('x-catalog-stale', String(stored.catalogFingerprint !== await services.catalog.fingerprint()));
        // Sent as stored: serialising it again could reorder keys or change its rounding.
        if (request.query.format === 'md') return reply.type('text/markdown; charset=utf-8').send(stored.markdown);
        return reply.type('application/json; charset=utf-8').send(stored.document);
      },
    );

    api.post(
      '/admin/models/:version/activate',
      {
        schema: {
          tags: ['admin'],
          summary: 'Serve this model version (roll back or forward), with the same swap as a retrain',
          operationId: 'activateModel',
          security,
          params: VersionParams,
          response: { 200: Type.Ref(ModelBody), 404: Type.Ref(ErrorBody), 409: Type.Ref(ErrorBody), 507: Type.Ref(ErrorBody), ...errors },
        },
      },
      async (request, reply) => {
        const model = await services.models.get(request.params.version);
        if (!model) throw notFound(`model version ${request.params.version}`);
        const running = await jobs.unfinished();
        if (running) throw new ApiError(409, 'job_running', `job ${running.id} is running; wait for it or cancel it first`);
        keepOpenWhileWorking(request.raw, reply.raw, services.config.connectionTimeoutMs);
        if (runtime.peek()?.model.version !== model.version) await bringIntoService(model, services, runtime);
        return modelView((await services.models.get(model.version))!, model.version);
      },
    );
  });
}
