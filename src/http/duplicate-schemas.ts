import { Type } from '@sinclair/typebox';
import { NEAR_DUPLICATE } from '../search/near-duplicates.js';
import { PosterBody } from './schemas.js';

/** The shapes of the near-duplicate answers: the public look-up, the admin groups, and what an add says when it flags one. */

export const NEAR_DUPLICATE_HELP =
  'A near-duplicate is the same picture re-encoded, resized, cropped, recoloured or framed: the two pictures\' perceptual hashes (256-bit DCT hashes ' +
  'of the whole picture, of the picture with a uniform border trimmed, and of its centred 95 % and 85 %; the smallest Hamming distance of the whole ' +
  `pictures, the trimmed ones, and either one's whole picture against the other's crops) within ${NEAR_DUPLICATE.maxDistance} bits, the rule bench/results/near-duplicates.md chose.`;

export const NearDuplicateBody = Type.Intersect(
  [
    Type.Ref(PosterBody),
    Type.Object({ distance: Type.Integer({ minimum: 0, maximum: 256, description: 'Hamming distance of the perceptual hashes, in bits (0 = the same hash)' }) }),
  ],
  { $id: 'NearDuplicate', description: 'A catalog poster that is a near-duplicate of the query' },
);

export const OnDuplicateField = {
  type: 'string',
  enum: ['allow', 'flag', 'reject'],
  default: 'allow',
  description:
    'What to do when the picture is a near-duplicate of a catalog poster (another one than the poster being replaced by an upsert): allow (default; not looked for), ' +
    'flag (added, and the answer lists them in near_duplicates, nearest first), reject (409 near_duplicate naming the nearest; its id also in X-Near-Duplicate-Of)',
} as const;

export const NEAR_DUPLICATES_MAX = 100;

export const NearDuplicatesResponse = Type.Object({
  near_duplicates: Type.Array(Type.Ref(NearDuplicateBody), {
    description: `The catalog posters that are near-duplicates of the query, nearest first (at most ${NEAR_DUPLICATES_MAX}; never the catalog poster asked about)`,
  }),
});

export const DuplicatesQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50, description: 'How many groups to list: the closest first' })),
});

/** Pairs listed per group of GET /admin/duplicates. */
export const PAIRS_PER_GROUP = 100;

export const DuplicateGroupsResponse = Type.Object({
  max_distance: Type.Integer({ description: 'The largest hash distance of a near-duplicate pair, in bits' }),
  total_groups: Type.Integer({ description: 'Groups in the catalog; `groups` holds the first `limit` of them' }),
  groups: Type.Array(
    Type.Object({
      posters: Type.Array(Type.Ref(PosterBody), { description: 'By id' }),
      pairs: Type.Array(
        Type.Object({
          a: Type.String({ description: 'Poster id' }),
          b: Type.String({ description: 'Poster id' }),
          distance: Type.Integer({ minimum: 0, maximum: 256 }),
        }),
        {
          description: `The near-duplicate pairs that join the group (a chain of them may join posters that are not a pair themselves), closest first; at most ${PAIRS_PER_GROUP} (n copies of one picture make n(n-1)/2 pairs)`,
        },
      ),
      total_pairs: Type.Integer({ description: 'Pairs in the group; `pairs` holds the closest of them' }),
    }),
    { description: 'Closest pair first' },
  ),
});
