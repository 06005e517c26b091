import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { MAX_GENRE_LENGTH, MAX_GENRES, posterFields, PosterFieldError, type PosterFields } from '../../catalog/importer.js';
import { answerOf, ApiError } from '../../errors.js';
import type { CatalogWriter, OnDuplicate } from '../../service/catalog-writes.js';
import { adminAuth } from '../admin-auth.js';
import { NEAR_DUPLICATE_HELP, NEAR_DUPLICATES_MAX, NearDuplicateBody, OnDuplicateField } from '../duplicate-schemas.js';
import { ErrorBody, PosterBody, PosterParams } from '../schemas.js';
import { readImageUpload, readMultipart } from '../upload.js';
import { baseUrl, nearDuplicatesView, posterView } from '../views.js';
import type { Services } from '../../service/startup.js';

const GENRES_HELP = 'one field per genre, or one field with genres separated by "|"';

/** The multipart body of POST /admin/posters, as the OpenAPI document shows it. */
export const PosterUploadBody = {
  type: 'object',
  required: ['image', 'genres'],
  properties: {
    image: { type: 'string', format: 'binary', description: 'The poster: JPEG, PNG, WebP, GIF, AVIF or TIFF' },
    id: { type: 'string', description: 'Letters, digits, _ . - (1-64); one is made when absent' },
    title: { type: 'string' },
    year: { type: 'integer', minimum: 1870, maximum: 2100 },
    release_date: { type: 'string', description: 'e.g. 1984-06-08' },
    genres: { type: 'array', items: { type: 'string' }, description: `In their source order: ${GENRES_HELP}` },
    single_genre: { type: 'string', description: 'The one genre of the paper\'s label; default: the first of genres' },
    split: { type: 'string', enum: ['train', 'val', 'test'] },
    upsert: { type: 'boolean', description: 'Replace the poster with this id if there is one (else 409 poster_exists)' },
    on_duplicate: OnDuplicateField,
  },
} as const;

/** An added poster, with the near-duplicates an add with on_duplicate=flag found. */
const AddedPosterBody = Type.Intersect([
  Type.Ref(PosterBody),
  Type.Object({
    near_duplicates: Type.Optional(
      Type.Array(Type.Ref(NearDuplicateBody), { description: `With on_duplicate=flag: the catalog posters it is a near-duplicate of, nearest first (at most ${NEAR_DUPLICATES_MAX}; empty: none)` }),
    ),
  }),
]);

function onDuplicate(text: string | undefined): OnDuplicate {
  if (text === undefined || text === 'allow' || text === 'flag' || text === 'reject') return text ?? 'allow';
  throw new ApiError(400, 'invalid_request', 'on_duplicate is allow, flag or reject');
}

const PosterChangesBody = Type.Object(
  {
    title: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    year: Type.Optional(Type.Union([Type.Integer({ minimum: 1870, maximum: 2100 }), Type.Null()])),
    release_date: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    genres: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: MAX_GENRE_LENGTH, pattern: '^[^|]*$' }), { minItems: 1, maxItems: MAX_GENRES, description: 'Replaces the genres, in order' })),
    single_genre: Type.Optional(Type.String({ minLength: 1, description: 'Default when genres change: the first of them' })),
    split: Type.Optional(Type.Union([Type.Union([Type.Literal('train'), Type.Literal('val'), Type.Literal('test')]), Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
type PosterChangesBody = Static<typeof PosterChangesBody>;

const errors = { 400: Type.Ref(ErrorBody), 401: Type.Ref(ErrorBody), 403: Type.Ref(ErrorBody), 404: Type.Ref(ErrorBody), 503: Type.Ref(ErrorBody), 507: Type.Ref(ErrorBody) };
const uploadErrors = { 413: Type.Ref(ErrorBody), 415: Type.Ref(ErrorBody), 422: Type.Ref(ErrorBody) };
const security = [{ bearerAuth: [] }];

/** A poster's fields from the API (form fields or a batch item), checked by the importer's rules. */
function parseFields(text: Record<string, string | undefined>): PosterFields {
  let parsed: PosterFields;
  try {
    parsed = posterFields({ ...text, id: text.id ?? `p-${randomBytes(6).toString('hex')}` });
  } catch (error) {
    if (error instanceof PosterFieldError) throw new ApiError(400, 'invalid_request', error.message);
    throw error;
  }
  if (!parsed.genres.includes(parsed.singleGenre)) throw new ApiError(400, 'invalid_request', `single_genre "${parsed.singleGenre}" is not one of the genres`);
  return parsed;
}

export const BATCH_MAX = 32;

const BatchItem = Type.Object(
  {
    id: Type.Optional(Type.String()),
    title: Type.Optional(Type.String()),
    year: Type.Optional(Type.Integer({ minimum: 1870, maximum: 2100 })),
    release_date: Type.Optional(Type.String()),
    genres: Type.Array(Type.String({ minLength: 1, maxLength: MAX_GENRE_LENGTH, pattern: '^[^|]*$' }), { minItems: 1, maxItems: MAX_GENRES }),
    single_genre: Type.Optional(Type.String()),
    split: Type.Optional(Type.Union([Type.Literal('train'), Type.Literal('val'), Type.Literal('test')])),
    image: Type.String({ contentEncoding: 'base64', description: 'The poster file, base64' }),
  },
  { additionalProperties: false },
);
const BatchBody = Type.Object(
  {
    posters: Type.Array(BatchItem, { minItems: 1, maxItems: BATCH_MAX }),
    upsert: Type.Optional(Type.Boolean({ default: false })),
    on_duplicate: Type.Optional(Type.Unsafe<OnDuplicate>({ ...OnDuplicateField, description: `For every poster: ${OnDuplicateField.description}` })),
  },
  { additionalProperties: false },
);
type BatchBody = Static<typeof BatchBody>;
const BatchResult = Type.Object({
  index: Type.Integer(),
  status: Type.Integer({ description: 'What POST /admin/posters would have answered for this poster: 201, 200 (upserted), a 4xx, or 503 (overloaded: retry it) or 507 (the disk is full), the other posters of the batch being added or refused each for itself' }),
  poster: Type.Optional(Type.Ref(PosterBody)),
  near_duplicates: Type.Optional(Type.Array(Type.Ref(NearDuplicateBody), { description: 'With on_duplicate=flag, as for POST /admin/posters' })),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
});

function single(fields: Map<string, string[]>, name: string): string | undefined {
  const values = fields.get(name);
  if (values && values.length > 1) throw new ApiError(400, 'invalid_request', `the field "${name}" was sent ${values.length} times`);
  return values?.[0];
}

/** The live catalog's admin routes: add, change, re-picture and remove posters while serving. */
export function adminPosterRoutes(app: FastifyInstance, services: Services, writer: CatalogWriter): void {
  void app.register(async (admin) => {
    admin.addHook('onRequest', adminAuth(services.config));
    const api = admin.withTypeProvider<TypeBoxTypeProvider>();
    const { config } = services;
    /** A write's change id, for a later read on any server (Marquee-Min-Change); none where one server writes. */
    const markChange = async (reply: FastifyReply, keys: number[]) => {
      const change = await services.embeddings.latestChange(keys);
      if (change !== null) reply.header('marquee-change', change);
    };

    api.post(
      '/admin/posters',
      {
        config: { upload: PosterUploadBody },
        schema: {
          tags: ['admin'],
          summary: 'Add a poster to the catalog: found by the very next search',
          operationId: 'addPoster',
          description: `Multipart: the image in \`image\`, the metadata in text fields (genres: ${GENRES_HELP}). 201 with the poster and Location; 409 poster_exists for a taken id, unless \`upsert\` is true (then 200). With \`on_duplicate\` flag or reject, near-duplicates of the picture in the catalog are looked for (${NEAR_DUPLICATE_HELP}) Embedded with the model in service; no index rebuild, no restart. The Server-Timing header says where the time went (embed: decoding and the forward pass; lock: waiting for other writes; duplicates: the perceptual hash's wait beyond the forward pass and the near-duplicate check; store: the image file, SQLite and the index).`,
          security,
          consumes: ['multipart/form-data'],
          response: { 200: AddedPosterBody, 201: AddedPosterBody, 409: Type.Ref(ErrorBody), ...errors, ...uploadErrors },
        },
      },
      async (request, reply) => {
        const { image, fields } = await readMultipart(request, config.maxUploadBytes);
        if (!image) throw new ApiError(400, 'no_file', 'no file was uploaded: send the poster in the multipart field "image"');
        const upsertText = single(fields, 'upsert');
        if (upsertText !== undefined && !['true', 'false'].includes(upsertText)) throw new ApiError(400, 'invalid_request', 'upsert is true or false');
        const parsed = parseFields({
          id: single(fields, 'id'),
          title: single(fields, 'title'),
          year: single(fields, 'year'),
          release_date: single(fields, 'release_date'),
          genres: (fields.get('genres') ?? []).join('|'),
          single_genre: single(fields, 'single_genre'),
          split: single(fields, 'split'),
        });
        const { poster, created, timing, nearDuplicates } = await writer.add(parsed, image, {
          upsert: upsertText === 'true',
          onDuplicate: onDuplicate(single(fields, 'on_duplicate')),
        });
        const base = baseUrl(request);
        const view = { ...posterView(poster, base), ...(nearDuplicates ? { near_duplicates: nearDuplicatesView(nearDuplicates, base) } : {}) };
        await markChange(reply, [poster.key]);
        return reply
          .code(created ? 201 : 200)
          .header('location', `/posters/${encodeURIComponent(poster.id)}`)
          .header(
            'server-timing',
            `embed;dur=${timing.embedMs.toFixed(1)}, lock;dur=${timing.waitMs.toFixed(1)}, duplicates;dur=${timing.duplicatesMs.toFixed(2)}, store;dur=${timing.storeMs.toFixed(1)}`,
          )
          .send(view);
      },
    );

    api.post(
      '/admin/posters/batch',
      {
        // Base64 makes a file a third larger; the whole batch may hold BATCH_MAX of the largest uploads.
        bodyLimit: Math.ceil((BATCH_MAX * config.maxUploadBytes * 4) / 3) + 64 * 1024,
        schema: {
          tags: ['admin'],
          summary: `Add up to ${BATCH_MAX} posters in one request, for clients that sync a collection`,
          operationId: 'addPosters',
          description:
            'JSON: each poster with its image in base64 and the fields of POST /admin/posters. Each is added as that route would add it (its embedding batched with the others); the answer lists, in order, what it would have answered for each: a poster that fails does not stop the others.',
          security,
          body: BatchBody,
          response: { 200: Type.Object({ results: Type.Array(BatchResult) }), ...errors, 413: Type.Ref(ErrorBody) },
        },
      },
      async (request, reply) => {
        const { posters, upsert = false, on_duplicate: duplicate = 'allow' } = request.body as BatchBody;
        const base = baseUrl(request);
        const stored: number[] = [];
        const results = await Promise.all(
          posters.map(async (item, index) => {
            try {
              const image = Buffer.from(item.image, 'base64');
              const fields = parseFields({ ...item, year: item.year === undefined ? undefined : String(item.year), genres: item.genres.join('|') });
              // The batch is one admitted request: its items wait for the decode budget in turn rather than fail.
              const { poster, created, nearDuplicates } = await writer.add(fields, image, { upsert, waitForDecode: true, onDuplicate: duplicate });
              stored.push(poster.key);
              return {
                index,
                status: created ? 201 : 200,
                poster: posterView(poster, base),
                ...(nearDuplicates ? { near_duplicates: nearDuplicatesView(nearDuplicates, base) } : {}),
              };
            } catch (error) {
              // Each item answers for itself, a refusal of the server's (503 overloaded, 507 a full disk) too: the
              // others may be stored already. Only a fault of ours fails the whole batch.
              const refused = answerOf(error);
              if (!refused) throw error;
              return { index, status: refused.statusCode, error: { code: refused.code, message: refused.message } };
            }
          }),
        );
        await markChange(reply, stored);
        return { results };
      },
    );

    api.patch(
      '/admin/posters/:id',
      {
        schema: {
          tags: ['admin'],
          summary: "Change a poster's metadata (the genre vote uses new genres at once)",
          operationId: 'updatePoster',
          security,
          params: PosterParams,
          body: PosterChangesBody,
          response: { 200: Type.Ref(PosterBody), ...errors },
        },
      },
      async (request, reply) => {
        const body = request.body as PosterChangesBody;
        const poster = await writer.update(request.params.id, {
          ...(body.title !== undefined ? { title: body.title } : {}),
          ...(body.year !== undefined ? { year: body.year } : {}),
          ...(body.release_date !== undefined ? { releaseDate: body.release_date } : {}),
          ...(body.genres !== undefined ? { genres: body.genres } : {}),
          ...(body.single_genre !== undefined ? { singleGenre: body.single_genre } : {}),
          ...(body.split !== undefined ? { split: body.split } : {}),
        });
        await markChange(reply, [poster.key]);
        return posterView(poster, baseUrl(request));
      },
    );

    api.put(
      '/admin/posters/:id/image',
      {
        config: { upload: true },
        schema: {
          tags: ['admin'],
          summary: "Replace a poster's picture (embedded again)",
          operationId: 'replacePosterImage',
          security,
          consumes: ['multipart/form-data'],
          params: PosterParams,
          response: { 200: Type.Ref(PosterBody), ...errors, ...uploadErrors },
        },
      },
      async (request, reply) => {
        const image = await readImageUpload(request, config.maxUploadBytes);
        const poster = await writer.replaceImage(request.params.id, image);
        await markChange(reply, [poster.key]);
        return posterView(poster, baseUrl(request));
      },
    );

    api.delete(
      '/admin/posters/:id',
      {
        schema: {
          tags: ['admin'],
          summary: 'Remove a poster: gone from search, browse, votes and catalog_match at once',
          operationId: 'deletePoster',
          description: 'Its image and its embeddings of every model version are removed; the catalog import does not bring it back (adding the id through this API does).',
          security,
          params: PosterParams,
          response: { 204: Type.Null(), ...errors },
        },
      },
      async (request, reply) => {
        const poster = await writer.remove(request.params.id);
        await markChange(reply, [poster.key]);
        return reply.code(204).send(null);
      },
    );
  });
}
