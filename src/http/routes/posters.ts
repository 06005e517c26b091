import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ApiError, notFound } from '../../errors.js';
import { CatalogMaps } from '../../figures/map-cache.js';
import { votedGenres } from '../../search/genre-vote.js';
import type { Hit } from '../../search/searcher.js';
import type { Engine } from '../../service/engine.js';
import { listPosters, type Listing } from '../../service/poster-listing.js';
import { genresOf, similarTo, vectorOfPoster, type GenreAnswer, type SimilarAnswer, type SimilarQuery as SearchQuery } from '../../service/poster-search.js';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';
import { CursorError, type Poster } from '../../state/catalog.js';
import {
  BrowseQuery,
  BrowseResponse,
  DEFAULT_BROWSE_LIMIT,
  DEFAULT_K,
  ErrorBody,
  errorResponses,
  GenreQuery,
  EmbedResponse,
  GenreResponse,
  PosterBody,
  PosterParams,
  SimilarQuery,
  SimilarResponse,
} from '../schemas.js';
import { readImageUpload } from '../upload.js';
import { baseUrl, neighborView, posterView } from '../views.js';

const MIME: Record<string, string> = { jpg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif', avif: 'image/avif', tif: 'image/tiff' };

const MapResponse = Type.Object({
  model_version: Type.String(),
  catalog_fingerprint: Type.String({
    description: 'The catalog state the map describes (as X-Catalog-Fingerprint of a model report): recomputed when posters are added, removed or re-pictured, labelled with their current genres',
  }),
  method: Type.Literal('umap'),
  params: Type.Object({ n_neighbors: Type.Integer(), min_dist: Type.Number(), seed: Type.Integer() }),
  genres: Type.Array(Type.Object({ genre: Type.String(), count: Type.Integer() }), { description: 'Single genres of the points, most common first' }),
  points: Type.Array(
    Type.Object({
      id: Type.String(),
      x: Type.Number({ description: '0..1, left to right' }),
      y: Type.Number({ description: '0..1, bottom to top' }),
      single_genre: Type.String(),
    }),
    { description: 'One per catalog poster, or per poster of a sample of 20,000 in a larger catalog' },
  ),
});

/** The k and filters of a similar query, checked. */
function similarQuery(query: SimilarQuery): SearchQuery & { k: number } {
  const { k = DEFAULT_K.similar, genre, year_from: yearFrom, year_to: yearTo, min_similarity: minSimilarity, diversity } = query;
  if (yearFrom !== undefined && yearTo !== undefined && yearFrom > yearTo) {
    throw new ApiError(400, 'invalid_request', `year_from (${yearFrom}) is after year_to (${yearTo})`);
  }
  return { k, filter: { genre, yearFrom, yearTo }, minSimilarity, diversity };
}

function similarView(engine: Engine, answer: SimilarAnswer, k: number, match: Poster | null, base: string) {
  return {
    model_version: engine.model.version,
    k,
    catalog_match: match ? posterView(match, base) : null,
    results: answer.hits.map((hit) => neighborView(hit, base)),
    truncated: answer.truncated,
  };
}

function genreView(engine: Engine, { method, hits, vote, classification }: GenreAnswer, k: number, match: Poster | null, base: string) {
  const top = classification?.probabilities[0];
  return {
    model_version: engine.model.version,
    k,
    method,
    catalog_match: match ? posterView(match, base) : null,
    prediction: classification ? { genre: top?.genre ?? null, score: top?.probability ?? 0 } : { genre: vote.genre, score: vote.scores[0]?.score ?? 0 },
    predicted: classification ? classification.predicted : votedGenres(vote),
    probabilities: classification?.probabilities ?? null,
    scores: vote.scores,
    majority: vote.majority,
    neighbors: hits.map((hit) => neighborView(hit, base)),
  };
}

export function posterRoutes(app: FastifyInstance, services: Services, runtime: Runtime): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { config, catalog } = services;

  /** The upload's embedding, and the catalog poster with the same pixels, if any (looked up during the forward pass). */
  const embedQuery = async (engine: Engine, bytes: Buffer) => {
    let match: Poster | null = null;
    const { vector, timing } = await engine.embedUpload(bytes, {
      whileEmbedding: async (image) => {
        match = await catalog.byPixelSha256(image.pixelSha256);
      },
    });
    return { vector, match: match as Poster | null, timing };
  };
  /**
   * Where an upload's time went, as a Server-Timing header: read (the multipart body), preprocess
   * (decode, resize, normalise), embed (waiting for a batch and the forward pass), search (and the answer built).
   */
  const timed = async <T>(request: FastifyRequest, reply: FastifyReply, answer: (bytes: Buffer, engine: Engine) => Promise<{ body: T; embed: { preprocessMs: number; embedMs: number } }>) => {
    const started = performance.now();
    const bytes = await readImageUpload(request, config.maxUploadBytes);
    const read = performance.now();
    return runtime.use(async (engine) => {
      const { body, embed } = await answer(bytes, engine);
      const search = performance.now() - read - embed.preprocessMs - embed.embedMs;
      reply.header(
        'server-timing',
        `read;dur=${(read - started).toFixed(2)}, preprocess;dur=${embed.preprocessMs.toFixed(2)}, embed;dur=${embed.embedMs.toFixed(2)}, search;dur=${search.toFixed(2)}`,
      );
      return body;
    });
  };
  const maps = new CatalogMaps({ ...services, dataDir: config.dataDir });

  api.post(
    '/posters/similar',
    {
      config: { upload: true },
      schema: {
        tags: ['posters'],
        summary: 'The catalog posters that look most like an uploaded one',
        operationId: 'findSimilarPosters',
        security: [],
        description:
          'Upload a poster in the multipart field `image`. Filters (`genre`, `year_from`, `year_to`) still return exactly k posters when the catalog has k that match. If the upload is the same picture as a catalog poster, `catalog_match` names it. The Server-Timing header says where the time went (read: the upload; preprocess: decode and resize; embed: waiting for a batch and the forward pass; search).',
        consumes: ['multipart/form-data'],
        querystring: SimilarQuery,
        response: { 200: SimilarResponse, ...errorResponses },
      },
    },
    async (request, reply) => {
      const query = similarQuery(request.query);
      return timed(request, reply, async (bytes, engine) => {
        const { vector, match, timing } = await embedQuery(engine, bytes);
        return { body: similarView(engine, await similarTo(engine, vector, query), query.k, match, baseUrl(request)), embed: timing };
      });
    },
  );

  api.post(
    '/posters/genre',
    {
      config: { upload: true },
      schema: {
        tags: ['posters'],
        summary: "A poster's likely genres, by a vote of its nearest catalog posters",
        operationId: 'predictGenres',
        security: [],
        description:
          'Upload a poster in the multipart field `image`. Its k nearest catalog posters vote; a catalog poster with the same pixels as the upload never votes for itself. Server-Timing as for similar.',
        consumes: ['multipart/form-data'],
        querystring: GenreQuery,
        response: { 200: GenreResponse, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { k = DEFAULT_K.genre, method } = request.query;
      return timed(request, reply, async (bytes, engine) => {
        const { vector, match, timing } = await embedQuery(engine, bytes);
        return { body: genreView(engine, await genresOf(engine, vector, k, new Set(match ? [match.key] : []), method), k, match, baseUrl(request)), embed: timing };
      });
    },
  );

  api.post(
    '/posters/embed',
    {
      config: { upload: true },
      schema: {
        tags: ['posters'],
        summary: "An uploaded poster's embedding under the active model",
        operationId: 'embedPoster',
        security: [],
        description: 'The vector that similarity search uses, for clients that keep their own index.',
        consumes: ['multipart/form-data'],
        response: { 200: EmbedResponse, ...errorResponses },
      },
    },
    async (request) => {
      const bytes = await readImageUpload(request, config.maxUploadBytes);
      return runtime.use(async (engine) => {
        const { vector, match } = await embedQuery(engine, bytes);
        return {
          model_version: engine.model.version,
          dims: vector.length,
          embedding: Array.from(vector),
          catalog_match: match ? posterView(match, baseUrl(request)) : null,
        };
      });
    },
  );

  api.get(
    '/posters',
    {
      schema: {
        tags: ['posters'],
        summary: 'Browse the catalog by id, or search it by title, a page at a time',
        operationId: 'listPosters',
        security: [],
        description:
          'Without `q`, every poster by id; with `q`, the posters whose title matches, best first: bm25 over the titles, ties by key, when each word of q is in at most 2,000 titles; a query with a more common word (in a large catalog) is listed by the word count of the titles, then key, the order of bm25 when each word occurs once in each title, and stays fast. Both take the genre and year filters; pass `next_cursor` back as `cursor` for the next page.',
        querystring: BrowseQuery,
        response: { 200: BrowseResponse, 400: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const { q, genre, year_from: yearFrom, year_to: yearTo, limit = DEFAULT_BROWSE_LIMIT, cursor } = request.query;
      let page: Listing;
      try {
        page = await listPosters(catalog, services.titles, { q, genre, yearFrom, yearTo, limit, cursor });
      } catch (error) {
        if (error instanceof CursorError) throw new ApiError(400, 'invalid_cursor', error.message);
        throw error;
      }
      const base = baseUrl(request);
      return { posters: page.posters.map((p) => posterView(p, base)), next_cursor: page.nextCursor };
    },
  );

  api.get(
    '/posters/map',
    {
      schema: {
        tags: ['posters'],
        summary: 'The embedding map: 2-D coordinates of every catalog poster under the active model',
        operationId: 'getPosterMap',
        security: [],
        description:
          "UMAP of the catalog's embeddings (the map `marquee figures` draws), of a sample of 20,000 posters in a larger catalog, computed on a worker thread on first request (tens of seconds for thousands of posters) and cached in the data dir per model version. After posters are added, removed or re-pictured it is computed again at most once a minute, the last map served meanwhile with the current genres; after a failed computation, 503 `map_unavailable` (with Retry-After) for five minutes when there is no map to serve.",
        response: { 200: MapResponse, 400: Type.Ref(ErrorBody), 503: Type.Ref(ErrorBody) },
      },
    },
    async () =>
      runtime.use(async (engine) => {
        const map = await maps.get(engine.model);
        const counts = new Map<string, number>();
        for (const { poster } of map.points) counts.set(poster.singleGenre, (counts.get(poster.singleGenre) ?? 0) + 1);
        return {
          model_version: map.modelVersion,
          catalog_fingerprint: map.catalogFingerprint,
          method: 'umap' as const,
          params: { n_neighbors: map.params.nNeighbors, min_dist: map.params.minDist, seed: map.params.seed },
          genres: [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([genre, count]) => ({ genre, count })),
          points: map.points.map(({ poster, x, y }) => ({ id: poster.id, x, y, single_genre: poster.singleGenre })),
        };
      }),
  );

  api.get(
    '/posters/:id/similar',
    {
      schema: {
        tags: ['posters'],
        summary: 'The catalog posters that look most like a catalog poster',
        operationId: 'findPostersSimilarToPoster',
        security: [],
        description:
          'The same answer as uploading the poster\'s image to POST /posters/similar, without the upload, and the poster itself never among the results (`catalog_match` names it).',
        params: PosterParams,
        querystring: SimilarQuery,
        response: { 200: SimilarResponse, 400: Type.Ref(ErrorBody), 404: Type.Ref(ErrorBody), 503: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const query = similarQuery(request.query);
      const poster = await catalog.get(request.params.id);
      if (!poster) throw notFound(`poster ${request.params.id}`);
      return runtime.use(async (engine) => {
        const vector = await vectorOfPoster(engine, poster, config.dataDir);
        const answer = await similarTo(engine, vector, { ...query, exclude: new Set([poster.key]) });
        return similarView(engine, answer, query.k, poster, baseUrl(request));
      });
    },
  );

  api.get(
    '/posters/:id/genre',
    {
      schema: {
        tags: ['posters'],
        summary: "A catalog poster's likely genres, by a vote of its nearest other posters",
        operationId: 'predictGenresOfPoster',
        security: [],
        description: "The same answer as uploading the poster's image to POST /posters/genre, without the upload: the poster never votes for itself.",
        params: PosterParams,
        querystring: GenreQuery,
        response: { 200: GenreResponse, 400: Type.Ref(ErrorBody), 404: Type.Ref(ErrorBody), 503: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const { k = DEFAULT_K.genre, method } = request.query;
      const poster = await catalog.get(request.params.id);
      if (!poster) throw notFound(`poster ${request.params.id}`);
      return runtime.use(async (engine) => {
        const vector = await vectorOfPoster(engine, poster, config.dataDir);
        return genreView(engine, await genresOf(engine, vector, k, new Set([poster.key]), method), k, poster, baseUrl(request));
      });
    },
  );

  api.get(
    '/posters/:id',
    {
      schema: {
        tags: ['posters'],
        summary: 'One poster',
        operationId: 'getPoster',
        security: [],
        params: PosterParams,
        response: { 200: Type.Ref(PosterBody), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const poster = await catalog.get(request.params.id);
      if (!poster) throw notFound(`poster ${request.params.id}`);
      return posterView(poster, baseUrl(request));
    },
  );

  api.get(
    '/posters/:id/image',
    {
      schema: {
        tags: ['posters'],
        summary: "A poster's image, as imported",
        operationId: 'getPosterImage',
        security: [],
        params: PosterParams,
        produces: ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif', 'image/tiff'],
        response: {
          200: Type.String({ format: 'binary', description: 'The image bytes' }),
          304: Type.Null({ description: 'Unchanged since the ETag sent in If-None-Match' }),
          404: Type.Ref(ErrorBody),
        },
      },
    },
    async (request, reply) => {
      const poster = await catalog.get(request.params.id);
      const file = poster ? join(config.dataDir, poster.imagePath) : null;
      if (!poster || !file || !existsSync(file)) throw notFound(`image of poster ${request.params.id}`);
      const etag = `"${poster.imageSha256}"`;
      reply.header('etag', etag).header('cache-control', 'public, max-age=3600');
      if (request.headers['if-none-match'] === etag) return reply.code(304).send(null);
      const extension = poster.imagePath.split('.').pop() ?? '';
      return reply.type(MIME[extension] ?? 'application/octet-stream').send(createReadStream(file));
    },
  );
}
