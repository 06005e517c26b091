import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { NEAR_DUPLICATE } from '../../search/near-duplicates.js';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';
import { adminAuth } from '../admin-auth.js';
import { DuplicateGroupsResponse, DuplicatesQuery, NEAR_DUPLICATE_HELP, PAIRS_PER_GROUP } from '../duplicate-schemas.js';
import { ErrorBody } from '../schemas.js';
import { baseUrl, posterView } from '../views.js';

/** GET /admin/duplicates: the catalog's groups of near-duplicate posters, for an administrator to tidy. */
export function adminDuplicateRoutes(app: FastifyInstance, services: Services, runtime: Runtime): void {
  void app.register(async (admin) => {
    admin.addHook('onRequest', adminAuth(services.config));
    const api = admin.withTypeProvider<TypeBoxTypeProvider>();

    api.get(
      '/admin/duplicates',
      {
        schema: {
          tags: ['admin'],
          summary: 'Groups of catalog posters that are near-duplicates of each other, the closest first',
          operationId: 'listDuplicates',
          description:
            `${NEAR_DUPLICATE_HELP} A group is every poster a chain of such pairs joins. At most \`limit\` groups are listed (the closest pair first); \`total_groups\` counts them all. ` +
            'The first request after a start compares every pair of posters (seconds for ten thousand; it grows with the square of the catalog), later ones reuse those pairs as adds and deletes keep them up to date.',
          security: [{ bearerAuth: [] }],
          querystring: DuplicatesQuery,
          response: { 200: DuplicateGroupsResponse, 400: Type.Ref(ErrorBody), 401: Type.Ref(ErrorBody), 403: Type.Ref(ErrorBody), 503: Type.Ref(ErrorBody) },
        },
      },
      async (request) => {
        const { limit = 50 } = request.query;
        return runtime.use(async () => {
          const groups = await services.duplicates.groups();
          const base = baseUrl(request);
          return {
            max_distance: NEAR_DUPLICATE.maxDistance,
            total_groups: groups.length,
            groups: groups.slice(0, limit).map((group) => ({
              posters: group.posters.map((p) => posterView(p, base)),
              pairs: group.pairs.slice(0, PAIRS_PER_GROUP).map(({ a, b, distance }) => ({ a: a.id, b: b.id, distance })),
              total_pairs: group.pairs.length,
            })),
          };
        });
      },
    );
  });
}
