import { Type, type Static } from '@sinclair/typebox';


export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable machine-readable code, e.g. no_file, too_many_pixels, not_found' }),
      message: Type.String({ description: 'What went wrong, for a person' }),
    }),
  },
  { $id: 'Error', description: 'Every error has this shape' },
);

export const PosterBody = Type.Object(
  {
    id: Type.String({ examples: ['tt0086425'] }),
    title: Type.Union([Type.String(), Type.Null()]),
    year: Type.Union([Type.Integer(), Type.Null()]),
    genres: Type.Array(Type.String(), { description: 'All genres, in source order' }),
    single_genre: Type.String({ description: 'The first genre: the label retrieval metrics use' }),
    split: Type.Union([Type.String(), Type.Null()], { description: 'train, val or test; null for posters outside the split' }),
    width: Type.Integer(),
    height: Type.Integer(),
    url: Type.String({ description: 'This poster in the API' }),
    image_url: Type.String({ description: 'The poster image' }),
  },
  { $id: 'Poster' },
);

export const NeighborBody = Type.Intersect(
  [
    Type.Ref(PosterBody),
    Type.Object({
      similarity: Type.Number({ description: 'Cosine similarity of the embeddings, 1 = identical' }),
      distance: Type.Number({ description: 'Euclidean distance between the unit-length embeddings (0..2)' }),
    }),
  ],
  { $id: 'Neighbor' },
);

const CatalogMatch = Type.Union([Type.Ref(PosterBody), Type.Null()], {
  description: 'The catalog poster whose decoded pixels equal the upload, if any',
});

export const DEFAULT_K = { similar: 8, genre: 5 } as const;
export const DEFAULT_BROWSE_LIMIT = 50;

export const SimilarQuery = Type.Object({
  k: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: DEFAULT_K.similar, description: 'How many posters to return' })),
  genre: Type.Optional(Type.String({ minLength: 1, description: 'Only posters with this genre' })),
  year_from: Type.Optional(Type.Integer({ minimum: 1800, maximum: 2200, description: 'Only posters from this year on' })),
  year_to: Type.Optional(Type.Integer({ minimum: 1800, maximum: 2200, description: 'Only posters up to this year' })),
  min_similarity: Type.Optional(
    Type.Number({ minimum: -1, maximum: 1, description: 'A relevance floor: only posters at least this similar (cosine); fewer than k may come back' }),
  ),
  diversity: Type.Optional(
    Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0,
      description:
        'Diverse answers: above 0, the k are picked from the 4k best by maximal marginal relevance, each scored (1 − diversity) · relevance − diversity · (its highest similarity to those picked before it), and listed in the order picked. 0: the k best, as they rank',
    }),
  ),
});
export type SimilarQuery = Static<typeof SimilarQuery>;

export const SimilarResponse = Type.Object({
  model_version: Type.String(),
  k: Type.Integer(),
  catalog_match: CatalogMatch,
  results: Type.Array(Type.Ref(NeighborBody), { description: 'Most similar first' }),
  truncated: Type.Boolean({ description: 'true when min_similarity dropped some of the k nearest, so fewer than k are returned' }),
});

export const GenreQuery = Type.Object({
  k: Type.Optional(Type.Integer({ minimum: 1, maximum: 50, default: DEFAULT_K.genre, description: 'How many neighbours vote' })),
  method: Type.Optional(
    Type.Union([Type.Literal('classifier'), Type.Literal('vote')], {
      description:
        "Where `prediction` and `predicted` come from: `classifier`, the model's trained genre head (calibrated probabilities; the default where the model has one), or `vote`, the neighbours' vote (the default otherwise). The vote is always in `scores` as the explanation",
    }),
  ),
});
export type GenreQuery = Static<typeof GenreQuery>;

export const GenreResponse = Type.Object({
  model_version: Type.String(),
  k: Type.Integer(),
  catalog_match: CatalogMatch,
  method: Type.Union([Type.Literal('classifier'), Type.Literal('vote')], { description: 'Where `prediction` and `predicted` come from' }),
  prediction: Type.Object(
    { genre: Type.Union([Type.String(), Type.Null()]), score: Type.Number() },
    { description: "The most likely genre: the classifier's most probable (score: its probability) or the vote's top genre (score: its share of the vote)" },
  ),
  predicted: Type.Array(Type.String(), {
    description:
      "The poster's predicted genres, most likely first: with the classifier, every genre whose probability reaches its threshold (chosen on the validation split for the best F1); with the vote, every genre with at least half the top genre's score",
  }),
  probabilities: Type.Union(
    [
      Type.Array(
        Type.Object({
          genre: Type.String(),
          probability: Type.Number({ description: 'Calibrated on the validation split: of posters given 0.3, about 30% have the genre' }),
          threshold: Type.Number({ description: 'The probability from which the genre is predicted' }),
          predicted: Type.Boolean(),
        }),
      ),
      Type.Null(),
    ],
    { description: "The classifier's probability for every genre it knows, most probable first; null with method=vote" },
  ),
  scores: Type.Array(Type.Object({ genre: Type.String(), score: Type.Number() }), {
    description: "Every catalog genre, highest first. Each neighbour votes for each of its genres with weight (1 + similarity) / 2; the totals sum to 1",
  }),
  majority: Type.Object(
    { genre: Type.Union([Type.String(), Type.Null()]), votes: Type.Integer() },
    { description: "The paper's rule: the most common single genre among the neighbours, ties to the more similar" },
  ),
  neighbors: Type.Array(Type.Ref(NeighborBody), { description: 'The posters that voted, most similar first (never the catalog match)' }),
});

export const EmbedResponse = Type.Object({
  model_version: Type.String(),
  dims: Type.Integer(),
  embedding: Type.Array(Type.Number(), { description: 'The unit-length embedding of the upload' }),
  catalog_match: CatalogMatch,
});

export const PosterParams = Type.Object({ id: Type.String({ description: 'Poster id, e.g. tt0086425' }) });
export type PosterParams = Static<typeof PosterParams>;

export const BrowseQuery = Type.Object({
  q: Type.Optional(
    Type.String({
      maxLength: 200,
      description:
        'Search by title instead of browsing by id: every word must match (diacritics and case ignored), the last one as a prefix unless q ends in a space. Best match first (bm25, ties by key). A q with no letter or digit is 400 empty_query',
      examples: ['star wa'],
    }),
  ),
  genre: Type.Optional(Type.String({ minLength: 1 })),
  year_from: Type.Optional(Type.Integer({ minimum: 1800, maximum: 2200, description: 'Only posters from this year on' })),
  year_to: Type.Optional(Type.Integer({ minimum: 1800, maximum: 2200, description: 'Only posters up to this year' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: DEFAULT_BROWSE_LIMIT })),
  cursor: Type.Optional(Type.String({ minLength: 1, description: 'next_cursor of the previous page' })),
});
export type BrowseQuery = Static<typeof BrowseQuery>;

export const BrowseResponse = Type.Object({
  posters: Type.Array(Type.Ref(PosterBody)),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as cursor for the next page; null on the last page' }),
});

const ExampleIds = (description: string, minItems = 0) =>
  Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { description, ...(minItems ? { minItems } : {}) });

/** What a recommend request sets besides its examples: the strategy, and k and the filters as for similar. */
const recommendSettings = {
  strategy: Type.Optional(
    Type.Unsafe<'average_vector' | 'best_score'>({
      type: 'string',
      enum: ['average_vector', 'best_score'],
      default: 'average_vector',
      description:
        'average_vector: search with the sum of the positives minus the sum of the negatives, made unit length. best_score (as Qdrant defines it): each candidate is scored by its best similarity to a positive, sigmoid-normalised, when that beats its best similarity to a negative, else minus the sigmoid of the latter; candidates are the positives\' nearest neighbours, grown until the best k are proven (the `similarity` shown is to the nearest positive)',
    }),
  ),
  ...SimilarQuery.properties,
};

/** POST /posters/recommend as JSON: the examples by catalog id. */
export const RecommendBody = Type.Object(
  {
    positive: ExampleIds('Catalog poster ids to find posters like (at least one; at most 16 examples in all)', 1),
    negative: Type.Optional(ExampleIds('Catalog poster ids to find posters unlike')),
    ...recommendSettings,
  },
  { additionalProperties: false },
);
export type RecommendBody = Static<typeof RecommendBody>;

/** The text fields of POST /posters/recommend as a multipart form, read into one object (the files are apart). */
export const RecommendFields = Type.Object(
  { positive: Type.Optional(ExampleIds('')), negative: Type.Optional(ExampleIds('')), ...recommendSettings },
  { additionalProperties: false },
);
export type RecommendFields = Static<typeof RecommendFields>;

/** POST /posters/recommend as a multipart form, as the OpenAPI document shows it. */
export const RecommendForm = {
  type: 'object',
  required: ['positive'],
  properties: {
    positive: {
      type: 'array',
      items: { type: 'string', format: 'binary' },
      description: 'Examples to find posters like: each an uploaded poster (a file) or a catalog poster id (a text field), one per field',
    },
    negative: { type: 'array', items: { type: 'string', format: 'binary' }, description: 'Examples to find posters unlike, as positive' },
    strategy: { type: 'string', enum: ['average_vector', 'best_score'] },
    k: { type: 'integer', minimum: 1, maximum: 100 },
    genre: { type: 'string' },
    year_from: { type: 'integer', minimum: 1800, maximum: 2200 },
    year_to: { type: 'integer', minimum: 1800, maximum: 2200 },
    min_similarity: { type: 'number', minimum: -1, maximum: 1 },
    diversity: { type: 'number', minimum: 0, maximum: 1 },
  },
} as const;

const RecommendExample = Type.Object({
  source: Type.Unsafe<'poster' | 'upload'>({ type: 'string', enum: ['poster', 'upload'], description: 'A catalog poster given by id, or an upload' }),
  poster: Type.Union([Type.Ref(PosterBody), Type.Null()], { description: 'The catalog poster; for an upload, the one with the same pixels, if any' }),
});

export const RecommendResponse = Type.Object({
  model_version: Type.String(),
  k: Type.Integer(),
  strategy: Type.String(),
  positive: Type.Array(RecommendExample, { description: 'The positive examples, in the order given' }),
  negative: Type.Array(RecommendExample, { description: 'The negative examples, in the order given' }),
  results: Type.Array(Type.Ref(NeighborBody), { description: 'Best first (with diversity: in the order picked); never an example' }),
  truncated: Type.Boolean({ description: 'true when min_similarity dropped some of the k best, so fewer than k are returned' }),
});

export const UploadBody = {
  type: 'object',
  required: ['image'],
  properties: { image: { type: 'string', format: 'binary', description: 'The poster: JPEG, PNG, WebP, GIF, AVIF or TIFF' } },
} as const;

export const errorResponses = {
  400: Type.Ref(ErrorBody),
  413: Type.Ref(ErrorBody),
  415: Type.Ref(ErrorBody),
  422: Type.Ref(ErrorBody),
  503: Type.Ref(ErrorBody),
};

