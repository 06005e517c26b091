import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ApiError } from '../../errors.js';
import { checkExamples, MAX_EXAMPLES, recommend, type Example, type RecommendQuery } from '../../service/recommend.js';
import type { Runtime } from '../../service/runtime.js';
import type { Services } from '../../service/startup.js';
import { DEFAULT_K, ErrorBody, errorResponses, RecommendBody, RecommendFields, RecommendForm, RecommendResponse } from '../schemas.js';
import { readFormParts } from '../upload.js';
import { baseUrl, recommendView } from '../views.js';

/** POST /posters/recommend: the request read from JSON (ids) or a multipart form (ids and uploads); the work is src/service/recommend.ts. */

const EXAMPLE_FIELDS = ['positive', 'negative'];
const SETTING_FIELDS = Object.keys(RecommendFields.properties).length - EXAMPLE_FIELDS.length;
/** Uploads of one request held in memory together, in files of the largest upload size: 4 (40 MB by default), not 16. */
const UPLOADS_IN_ONE_REQUEST = 4;
const tooManyExamples = () =>
  new ApiError(400, 'too_many_examples', `at most ${MAX_EXAMPLES} examples, positive and negative together (and ${SETTING_FIELDS} other fields)`);

interface RecommendInput {
  fields: RecommendFields;
  positive: Example[];
  negative: Example[];
}

/** The multipart form: files and ids in `positive` and `negative`, one per part, in order; the settings as text fields. */
async function readForm(request: FastifyRequest, maxBytes: number): Promise<RecommendInput> {
  const parts = await readFormParts(request, {
    maxBytes,
    maxTotalBytes: UPLOADS_IN_ONE_REQUEST * maxBytes,
    fileFields: EXAMPLE_FIELDS,
    limits: { files: MAX_EXAMPLES, fields: MAX_EXAMPLES + SETTING_FIELDS, parts: MAX_EXAMPLES + SETTING_FIELDS },
    tooMany: tooManyExamples,
  });
  const examples: Record<string, Example[]> = { positive: [], negative: [] };
  const ids: Record<string, string[]> = { positive: [], negative: [] };
  const settings: Record<string, string> = {};
  for (const part of parts) {
    const list = examples[part.field];
    if (list && 'file' in part) list.push({ upload: part.file });
    else if ('value' in part && list) {
      list.push({ id: part.value });
      ids[part.field]!.push(part.value);
    } else if ('value' in part) {
      if (part.field in settings) throw new ApiError(400, 'invalid_request', `the field "${part.field}" was sent more than once`);
      settings[part.field] = part.value;
    }
  }
  const fields: Record<string, unknown> = { ...settings, positive: ids.positive, negative: ids.negative };
  const validate = request.compileValidationSchema(RecommendFields, 'body');
  if (!validate(fields)) {
    const error = validate.errors?.[0];
    throw new ApiError(400, 'invalid_request', `body${error?.instancePath ?? ''} ${error?.message ?? 'is not valid'}`);
  }
  return { fields: fields as RecommendFields, positive: examples.positive!, negative: examples.negative! };
}

function toQuery({ fields, positive, negative }: RecommendInput): RecommendQuery {
  const { strategy = 'average_vector', k = DEFAULT_K.similar, genre, year_from: yearFrom, year_to: yearTo, min_similarity: minSimilarity, diversity } = fields;
  if (yearFrom !== undefined && yearTo !== undefined && yearFrom > yearTo) {
    throw new ApiError(400, 'invalid_request', `year_from (${yearFrom}) is after year_to (${yearTo})`);
  }
  checkExamples(positive, negative);
  return { positive, negative, strategy, k, filter: { genre, yearFrom, yearTo }, minSimilarity, diversity };
}

export function recommendRoutes(app: FastifyInstance, services: Services, runtime: Runtime): void {
  const { config, catalog } = services;
  app.post(
    '/posters/recommend',
    {
      config: {
        upload: { content: { 'application/json': { schema: RecommendBody }, 'multipart/form-data': { schema: RecommendForm } } },
      },
      schema: {
        tags: ['posters'],
        summary: 'Posters like some examples and unlike others',
        operationId: 'recommendPosters',
        security: [],
        description: `Positive and negative examples, each a catalog poster or an upload: JSON with poster ids, or a multipart form whose \`positive\` and \`negative\` fields are files (uploads) or text (ids), one example per field, with the other settings as text fields. At most ${MAX_EXAMPLES} examples in all, their uploads together at most ${UPLOADS_IN_ONE_REQUEST} times the upload size limit (413 upload_too_large); at least one positive. No example is ever among the results, nor the catalog poster with an uploaded example's pixels. k, the filters, min_similarity, diversity and the answer are as for similar; one positive and no negative answers exactly as similar does for it. An unknown id is 404 not_found.`,
        body: { content: { 'application/json': { schema: RecommendBody } } },
        response: { 200: RecommendResponse, 404: Type.Ref(ErrorBody), ...errorResponses },
      },
    },
    async (request) => {
      let input: RecommendInput;
      if (request.isMultipart()) input = await readForm(request, config.maxUploadBytes);
      else {
        if (request.body === undefined || request.body === null) {
          throw new ApiError(400, 'invalid_request', 'send the examples as JSON ({"positive": [ids], ...}) or as a multipart form');
        }
        if (typeof request.body !== 'object') throw new ApiError(415, 'unsupported_media_type', 'send application/json or multipart/form-data');
        const { positive, negative = [], ...fields } = request.body as RecommendBody;
        input = { fields, positive: positive.map((id) => ({ id })), negative: negative.map((id) => ({ id })) };
      }
      const query = toQuery(input);
      return runtime.use(async (engine) => {
        const answer = await recommend(engine, catalog, config.dataDir, query);
        return recommendView(engine.model.version, query.k, query.strategy, answer, baseUrl(request));
      });
    },
  );
}
