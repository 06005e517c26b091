import type { FastifyRequest } from 'fastify';
import type { Hit } from '../search/searcher.js';
import type { NearDuplicate } from '../service/near-duplicates.js';
import type { RecommendAnswer, ResolvedExample } from '../service/recommend.js';
import type { Poster } from '../state/catalog.js';
import { NEAR_DUPLICATES_MAX } from './duplicate-schemas.js';

/** How posters look in responses: one place for every route that returns them. */

export function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

export function posterView(poster: Poster, base: string) {
  const url = `${base}/posters/${encodeURIComponent(poster.id)}`;
  return {
    id: poster.id,
    title: poster.title,
    year: poster.year,
    genres: poster.genres,
    single_genre: poster.singleGenre,
    split: poster.split,
    width: poster.width,
    height: poster.height,
    url,
    image_url: `${url}/image`,
  };
}

export function neighborView(hit: Hit, base: string) {
  return { ...posterView(hit.poster, base), similarity: hit.similarity, distance: hit.distance };
}

export function recommendView(modelVersion: string, k: number, strategy: string, answer: RecommendAnswer, base: string) {
  const example = (e: ResolvedExample) => ({ source: e.source, poster: e.poster ? posterView(e.poster, base) : null });
  return {
    model_version: modelVersion,
    k,
    strategy,
    positive: answer.positive.map(example),
    negative: answer.negative.map(example),
    results: answer.hits.map((hit) => neighborView(hit, base)),
    truncated: answer.truncated,
  };
}

function nearDuplicateView(match: NearDuplicate, base: string) {
  return { ...posterView(match.poster, base), distance: match.distance };
}

/** Near-duplicates as every answer lists them: the nearest NEAR_DUPLICATES_MAX. */
export function nearDuplicatesView(found: NearDuplicate[], base: string) {
  return found.slice(0, NEAR_DUPLICATES_MAX).map((match) => nearDuplicateView(match, base));
}
