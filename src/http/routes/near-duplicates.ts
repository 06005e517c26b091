import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { notFound } from '../../errors.js';
import type { NearDuplicate } from '../../service/near-duplicates.js';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';
import { NEAR_DUPLICATE_HELP, NearDuplicatesResponse } from '../duplicate-schemas.js';
import { ErrorBody, errorResponses, PosterParams } from '../schemas.js';
import { readImageUpload } from '../upload.js';
import { baseUrl, nearDuplicatesView } from '../views.js';

/**
 * The catalog's near-duplicates of an upload or of a catalog poster: what the demo page's badge
 * shows. They answer once the service is ready (503 before), when every poster has its hash.
 */
export function nearDuplicateRoutes(app: FastifyInstance, services: Services, runtime: Runtime): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { config, catalog, duplicates } = services;
  const view = (found: NearDuplicate[], base: string) => ({ near_duplicates: nearDuplicatesView(found, base) });

  api.post(
    '/posters/near-duplicates',
    {
      config: { upload: true },
      schema: {
        tags: ['posters'],
        summary: 'The catalog posters that are the same picture as an uploaded one',
        operationId: 'findNearDuplicates',
        security: [],
        description: `Upload a poster in the multipart field \`image\`. ${NEAR_DUPLICATE_HELP} No embedding is made: the picture is only hashed.`,
        consumes: ['multipart/form-data'],
        response: { 200: NearDuplicatesResponse, ...errorResponses },
      },
    },
    async (request) => {
      const bytes = await readImageUpload(request, config.maxUploadBytes);
      return runtime.use(async () => view(await duplicates.find(await duplicates.hash(bytes)), baseUrl(request)));
    },
  );

  api.get(
    '/posters/:id/near-duplicates',
    {
      schema: {
        tags: ['posters'],
        summary: 'The other catalog posters that are the same picture as a catalog poster',
        operationId: 'findNearDuplicatesOfPoster',
        security: [],
        description: `${NEAR_DUPLICATE_HELP} Never the poster itself.`,
        params: PosterParams,
        response: { 200: NearDuplicatesResponse, 400: Type.Ref(ErrorBody), 404: Type.Ref(ErrorBody), 503: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const poster = await catalog.get(request.params.id);
      if (!poster) throw notFound(`poster ${request.params.id}`);
      return runtime.use(async () => {
        const hash = (await duplicates.hashOf(poster.key)) ?? (await duplicates.hashOfImage(poster));
        return view(await duplicates.find(hash, poster.key), baseUrl(request));
      });
    },
  );
}
