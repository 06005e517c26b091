import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError } from '../errors.js';
import { classifyGenres, type GenreClassification } from '../search/genre-head.js';
import { voteGenres, type GenreVote } from '../search/genre-vote.js';
import { maximalMarginalRelevance } from '../search/mmr.js';
import type { Hit, Searcher, SearchFilter } from '../search/searcher.js';
import type { Neighbor } from '../search/vector-index.js';
import type { Poster } from '../state/catalog.js';
import type { Engine } from './engine.js';

/**
 * What the similar and genre routes answer, whether the query is an upload or a catalog poster:
 * the routes read the request and render views; the search and the vote happen here.
 */

export interface SimilarQuery {
  k: number;
  filter?: SearchFilter;
  /** Posters never returned (the query itself, when it is a catalog poster). */
  exclude?: Set<number>;
  /** A relevance floor: neighbours below this cosine similarity are dropped, so fewer than k may come back. */
  minSimilarity?: number;
  /** 0..1: above 0, the k are picked from a larger pool by maximal marginal relevance (src/search/mmr.ts). */
  diversity?: number;
}

export interface SimilarAnswer {
  hits: Hit[];
  /** The floor dropped some of the k nearest. */
  truncated: boolean;
}

/** How many candidates a diverse answer picks its k from: four times k, which k's own bound (100) caps at 400. */
export const diversityPool = (k: number): number => 4 * k;

export async function similarTo(engine: Engine, vector: Float32Array, query: SimilarQuery): Promise<SimilarAnswer> {
  const { searcher } = engine;
  if (query.diversity) {
    const pool = searcher.nearest(vector, diversityPool(query.k), query.filter ?? {}, query.exclude ?? new Set());
    return answerFrom(searcher, pool.map((neighbor) => ({ neighbor, relevance: similarityOf(neighbor) })), query);
  }
  const nearest = await searcher.search(vector, query.k, query.filter ?? {}, query.exclude ?? new Set());
  if (query.minSimilarity === undefined) return { hits: nearest, truncated: false };
  const floor = query.minSimilarity;
  const hits = nearest.filter((hit) => hit.similarity >= floor);
  return { hits, truncated: hits.length < nearest.length };
}

/** A candidate of an answer: the neighbour it is shown as (its similarity is what the floor reads), and its rank's value. */
export interface Ranked {
  neighbor: Neighbor;
  relevance: number;
}

const similarityOf = (neighbor: Neighbor): number => 1 - (neighbor.distance * neighbor.distance) / 2;

/**
 * The answer from ranked candidates (best first): the first k, or with diversity the pool of 4k,
 * less those under the relevance floor; with diversity, the k of them that maximal marginal
 * relevance picks, compared by their vectors in the int8 rows.
 */
export async function answerFrom(searcher: Searcher, ranked: Ranked[], query: Pick<SimilarQuery, 'k' | 'minSimilarity' | 'diversity'>): Promise<SimilarAnswer> {
  const top = ranked.slice(0, query.diversity ? diversityPool(query.k) : query.k);
  const floor = query.minSimilarity;
  const kept = floor === undefined ? top : top.filter((r) => similarityOf(r.neighbor) >= floor);
  const truncated = kept.length < Math.min(query.k, top.length);
  if (!query.diversity || kept.length <= 1) return { hits: await searcher.hitsOf(kept.slice(0, query.k).map((r) => r.neighbor)), truncated };
  const candidates = kept.flatMap((r) => {
    const vector = searcher.rowVector(r.neighbor.key);
    return vector ? [{ ...r, vector }] : [];
  });
  const picked = maximalMarginalRelevance(candidates, query.k, query.diversity);
  return { hits: await searcher.hitsOf(picked.map((i) => candidates[i]!.neighbor)), truncated };
}

export type GenreMethod = 'classifier' | 'vote';

export interface GenreAnswer {
  /** Which answer `prediction` and `predicted` come from. */
  method: GenreMethod;
  hits: Hit[];
  vote: GenreVote;
  /** The model's genre head applied to the embedding; null when the version has none or the vote was asked for. */
  classification: GenreClassification | null;
}

/**
 * A poster's genres: by the version's genre head (the default where it has one) or by the vote of
 * its k nearest; the vote is always computed, as the explanation. Never counts `exclude` (the query's own catalog poster).
 */
export async function genresOf(engine: Engine, vector: Float32Array, k: number, exclude: Set<number>, asked?: GenreMethod): Promise<GenreAnswer> {
  if (asked === 'classifier' && !engine.genreHead) {
    throw new ApiError(400, 'no_genre_head', `model version ${engine.model.version} has no genre classifier: ask for method=vote`);
  }
  const method = asked ?? (engine.genreHead ? 'classifier' : 'vote');
  const hits = await engine.searcher.search(vector, k, {}, exclude);
  const vote = voteGenres(
    hits.map((hit) => ({ genres: hit.poster.genres, singleGenre: hit.poster.singleGenre, similarity: hit.similarity })),
    engine.genres,
  );
  const classification = method === 'classifier' ? classifyGenres(engine.genreHead!, vector) : null;
  return { method, hits, vote, classification };
}

/**
 * A catalog poster's embedding under the engine's model: the stored one, or (a poster imported
 * beside the server since the engine loaded) its stored image embedded now.
 */
export async function vectorOfPoster(engine: Engine, poster: Poster, dataDir: string): Promise<Float32Array> {
  return (await engine.searcher.vectorOf(poster.key)) ?? (await engine.embedUpload(await readFile(join(dataDir, poster.imagePath)))).vector;
}
