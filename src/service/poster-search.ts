import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { voteGenres, type GenreVote } from '../search/genre-vote.js';
import type { Hit, SearchFilter } from '../search/searcher.js';
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
}

export interface SimilarAnswer {
  hits: Hit[];
  /** The floor dropped some of the k nearest. */
  truncated: boolean;
}

export function similarTo(engine: Engine, vector: Float32Array, query: SimilarQuery): SimilarAnswer {
  const nearest = engine.searcher.search(vector, query.k, query.filter ?? {}, query.exclude ?? new Set());
  if (query.minSimilarity === undefined) return { hits: nearest, truncated: false };
  const floor = query.minSimilarity;
  const hits = nearest.filter((hit) => hit.similarity >= floor);
  return { hits, truncated: hits.length < nearest.length };
}

/** The genre vote of the k nearest, never counting `exclude` (the query's own catalog poster). */
export function genreVote(engine: Engine, vector: Float32Array, k: number, exclude: Set<number>): { hits: Hit[]; vote: GenreVote } {
  const hits = engine.searcher.search(vector, k, {}, exclude);
  const vote = voteGenres(
    hits.map((hit) => ({ genres: hit.poster.genres, singleGenre: hit.poster.singleGenre, similarity: hit.similarity })),
    engine.genres,
  );
  return { hits, vote };
}

/**
 * A catalog poster's embedding under the engine's model: the stored one, or (a poster imported
 * beside the server since the engine loaded) its stored image embedded now.
 */
export async function vectorOfPoster(engine: Engine, poster: Poster, dataDir: string): Promise<Float32Array> {
  return engine.searcher.vectorOf(poster.key) ?? (await engine.embedUpload(await readFile(join(dataDir, poster.imagePath)))).vector;
}
