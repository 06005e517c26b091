import { availableParallelism } from 'node:os';
import { ApiError, notFound } from '../errors.js';
import { averageVector, bestScore, type Strategy } from '../search/recommend-scores.js';
import type { Searcher, SearchFilter } from '../search/searcher.js';
import type { Catalog, Poster } from '../state/catalog.js';
import type { Engine } from './engine.js';
import { answerFrom, diversityPool, similarTo, vectorOfPoster, type Ranked, type SimilarAnswer } from './poster-search.js';

/**
 * POST /posters/recommend: posters like the positive examples and unlike the negative ones. An
 * example is a catalog poster (by id) or an upload; none is ever among the results (nor the
 * catalog poster with an uploaded example's pixels). One positive and no negative is the similar
 * search of that example, whichever the strategy: the same answer as GET /posters/{id}/similar.
 */

/** The most examples, positive and negative together, one request may give. */
export const MAX_EXAMPLES = 16;

/** best_score's candidates: each positive's nearest, their number grown by this factor while the answer is not proven exact. */
const CANDIDATE_GROWTH = 4;
/** The most nearest neighbours of one positive that best_score scores; past it the answer may be approximate. */
const MAX_CANDIDATES_PER_POSITIVE = 4096;
/**
 * best_score searches the graph for its positives' neighbours on all cores from this many posters:
 * 3 positives at 200,000 took 587 µs on 2 threads against 732 µs on one (usearch's binding). At 7,198
 * (first round, expansion 13) 2 threads saved 28 µs at p50 in this process but lost it at p99 (386
 * against 232 µs), and through the server best_score went from 1.35x similar's p50 to 1.43x (AVX2
 * EPYC, 2 cores). The graph walk (graph-walk.ts) at a million: 457–477 µs on 2 threads, 553–556 on one.
 */
const PARALLEL_SEARCH_FROM = 100_000;
const SEARCH_THREADS = availableParallelism();
/**
 * best_score's first searches, one per positive, walk with a share of a search's expansion
 * (usearch's ef), as far as the answer's recall@8 against scoring every poster stays at least
 * similar's own at the whole expansion (3 positives, 2 negatives, k=8; bench/results/recommend.md).
 * A narrow round that misses a neighbour still reports a reach, and a positive is searched no further
 * once its reach falls below the answer, so each share is kept to the catalog sizes where it was measured.
 * - Below NARROW_FIRST_ROUND_BELOW (the demo catalog, 7,198): an eighth, 8 of 64, so in effect the
 *   count fetched (k plus the examples): recall 0.9979–0.9984 against similar's 0.9977–0.9981 over
 *   1,000 draws, the three searches 156–169 µs against 347–559.
 * - Above (measured at a million posters: bench/million.ts's synthetic catalog, f16 graph): three
 *   quarters, 48: recall 0.922 against similar's 0.905 over 120 draws (the whole expansion 0.922–0.941),
 *   best_score 720–1,004 µs in this process against 758–1,395, and through the server 0.67 ms more
 *   than similar at p50 against 0.83–0.84. Five eighths (40) lost 0.06 of recall in 40 draws, an eighth 0.15.
 */
const FIRST_ROUND_EXPANSION_SHARE = { small: 1 / 8, large: 3 / 4 };
/** The catalog size up to which best_score's first round takes the small share: measured at 7,198 (the demo catalog), with room for its growth. */
const NARROW_FIRST_ROUND_BELOW = 10_000;
/**
 * best_score scores every poster a filter leaves when it leaves at most this many: one pass over
 * them, not a search per positive. Measured against the positives' scan (their candidates by the
 * coarse layer, scored by the kernel; 2026-12-05, AVX2 EPYC, 3 positives, 2 negatives, p50): 75 µs
 * against 104 at 50 posters, 141 against 129 at 97, 208 against 152 at 144, 424 against 213 at 300.
 */
const EXACT_PASS_LIMIT = 80;

export type Example = { id: string } | { upload: Buffer };

export interface RecommendQuery {
  positive: Example[];
  negative: Example[];
  strategy: Strategy;
  k: number;
  filter: SearchFilter;
  minSimilarity?: number;
  diversity?: number;
}

/** An example as the answer names it: the catalog poster it is, or for an upload, the one with its pixels (if any). */
export interface ResolvedExample {
  source: 'poster' | 'upload';
  poster: Poster | null;
  vector: Float32Array;
}

export interface RecommendAnswer extends SimilarAnswer {
  positive: ResolvedExample[];
  negative: ResolvedExample[];
}

/** What can be said of the examples before any is looked up or embedded: how many, and none both positive and negative. */
export function checkExamples(positive: Example[], negative: Example[]): void {
  if (positive.length === 0) throw new ApiError(400, 'invalid_request', 'give at least one positive example (a poster id or an upload)');
  const total = positive.length + negative.length;
  if (total > MAX_EXAMPLES) throw new ApiError(400, 'too_many_examples', `${total} examples: at most ${MAX_EXAMPLES}, positive and negative together`);
  const positiveIds = new Set(positive.flatMap((e) => ('id' in e ? [e.id] : [])));
  const both = negative.find((e) => 'id' in e && positiveIds.has(e.id));
  if (both) throw new ApiError(400, 'invalid_request', `poster ${(both as { id: string }).id} is both a positive and a negative example`);
}

export async function recommend(engine: Engine, catalog: Catalog, dataDir: string, query: RecommendQuery): Promise<RecommendAnswer> {
  const { positive, negative, strategy, k, filter, minSimilarity, diversity } = query;
  checkExamples(positive, negative);
  // Every id is looked up (in one query) before any upload is embedded: an unknown one costs nothing.
  const ids = [...positive, ...negative].flatMap((e) => ('id' in e ? [e.id] : []));
  const found = await catalog.getByIds(ids);
  const posterOf = (example: Example, role: string, index: number): Poster | null => {
    if (!('id' in example)) return null;
    const poster = found.get(example.id);
    if (!poster) throw notFound(`poster ${example.id} (${role} example ${index + 1})`);
    return poster;
  };
  const posters = [positive.map((e, i) => posterOf(e, 'positive', i)), negative.map((e, i) => posterOf(e, 'negative', i))] as const;
  // One positive alone is the similar search of its stored vector; several are combined, and read
  // from the int8 rows in memory (to about 1e-5) rather than from SQLite one by one.
  const alone = positive.length === 1 && negative.length === 0;
  const vectorOf = async (poster: Poster) => (alone ? null : engine.searcher.rowVector(poster.key)) ?? (await vectorOfPoster(engine, poster, dataDir));
  const resolve = (examples: Example[], found: (Poster | null)[]) =>
    Promise.all(
      examples.map(async (example, i): Promise<ResolvedExample> => {
        if ('id' in example) return { source: 'poster', poster: found[i]!, vector: await vectorOf(found[i]!) };
        const { vector, image } = await engine.embedUpload(example.upload);
        return { source: 'upload', poster: await catalog.byPixelSha256(image.pixelSha256), vector };
      }),
    );
  const [positives, negatives] = await Promise.all([resolve(positive, posters[0]), resolve(negative, posters[1])]);
  // checkExamples compared ids; an upload is its catalog poster (by its pixels) once resolved.
  const positiveKeys = new Set(positives.flatMap((e) => (e.poster ? [e.poster.key] : [])));
  const both = negatives.find((e) => e.poster && positiveKeys.has(e.poster.key));
  if (both) throw new ApiError(400, 'invalid_request', `poster ${both.poster!.id} is both a positive and a negative example (an upload counts as the catalog poster with its pixels)`);
  const exclude = new Set([...positives, ...negatives].flatMap((e) => (e.poster ? [e.poster.key] : [])));
  const settings = { k, filter, exclude, minSimilarity, diversity };
  const vectors = (examples: ResolvedExample[]) => examples.map((e) => e.vector);

  let answer: SimilarAnswer;
  if (alone) {
    answer = await similarTo(engine, positives[0]!.vector, settings);
  } else if (strategy === 'average_vector') {
    const vector = averageVector(vectors(positives), vectors(negatives));
    if (!vector) throw new ApiError(400, 'invalid_request', 'the examples cancel out: the positives minus the negatives leave no direction to search');
    answer = await similarTo(engine, vector, settings);
  } else {
    const ranked = bestScoreCandidates(engine.searcher, vectors(positives), vectors(negatives), filter, exclude, diversity ? diversityPool(k) : k);
    answer = await answerFrom(engine.searcher, ranked, settings);
  }
  return { ...answer, positive: positives, negative: negatives };
}

/**
 * best_score over a candidate set: each positive's nearest neighbours (under the filter), scored
 * against every example from the int8 rows (both layers, to about 1e-5, by the WebAssembly kernel),
 * best first, ties by key. Those first `wanted` are the answer of scoring every poster that passes
 * the filter when each scores above zero with a best similarity at least every positive's reach (the
 * similarity of that positive's farthest neighbour fetched): a poster not fetched is no nearer any
 * positive than its reach, and one nearer a negative scores below zero. Until then the neighbours fetched,
 * first `wanted` per positive, grow fourfold for the positives whose reach is still above the last
 * of the best `wanted` (the others can add nothing better), up to 4,096 per positive (then the
 * answer may be approximate: only with many examples crowding each other's neighbourhoods). A filter (or a
 * catalog) that leaves at most 80 posters is scored whole instead. Each candidate's shown
 * similarity is to its nearest positive.
 */
export function bestScoreCandidates(
  searcher: Searcher,
  positives: Float32Array[],
  negatives: Float32Array[],
  filter: SearchFilter,
  exclude: Set<number>,
  wanted: number,
  exactPassLimit = EXACT_PASS_LIMIT,
): Ranked[] {
  /** `similarities`: to each positive, as the kernel computes them (what `best` is the largest of). */
  type Scored = Ranked & { best: number; similarities: Float32Array };
  const scored = new Map<number, Scored>();
  const examples = [...positives, ...negatives];
  const m = examples.length;
  const order = (a: Scored, b: Scored) => b.relevance - a.relevance || a.neighbor.key - b.neighbor.key;
  /** Scores the keys against every example (positives first); all scored so far, best first. */
  const add = (keys: number[]): Scored[] => {
    const dots = searcher.rowDots(keys, examples);
    keys.forEach((key, i) => {
      if (Number.isNaN(dots[i * m]!)) return;
      const similarities = dots.subarray(i * m, i * m + positives.length);
      let best = Number.NEGATIVE_INFINITY;
      for (const similarity of similarities) best = Math.max(best, similarity);
      let worst = Number.NEGATIVE_INFINITY;
      for (let j = positives.length; j < m; j++) worst = Math.max(worst, dots[i * m + j]!);
      scored.set(key, { neighbor: { key, distance: Math.sqrt(Math.max(0, 2 - 2 * best)) }, relevance: bestScore(best, worst), best, similarities });
    });
    return [...scored.values()].sort(order);
  };
  const all = searcher.passing(filter, exclude, exactPassLimit);
  if (all) return add(all);
  // The `wanted` nearest of each positive are often enough: the best `wanted` by their best similarity
  // are those of the positive whose neighbours are nearest, unless negatives push some under zero.
  const threads = searcher.size >= PARALLEL_SEARCH_FROM ? SEARCH_THREADS : 1;
  /** The positives whose neighbourhood may still hold a better candidate than those scored: searched again, further. */
  let open = positives.map((_, i) => i);
  /**
   * Per positive, its candidates last fetched: no poster left unfetched is nearer it than the least
   * similar of them (its reach). The reach is read in the kernel's similarities, the measure `best`
   * is in: the graph's own distances differ from them by float rounding (f32) or about 1e-3 (f16),
   * and when the best `wanted` were one positive's neighbours, the last of them seemed beaten by
   * itself and its positive was searched again, for nothing (on the demo catalog, through the
   * route, in 19 % of requests).
   */
  const fetched = new Array<number[]>(positives.length);
  const first = Math.max(wanted, 8);
  for (let fetch = first; ; fetch *= CANDIDATE_GROWTH) {
    const fresh = new Set<number>();
    let covered = false;
    searcher.candidatesEach(open.map((i) => positives[i]!), fetch, filter, exclude, threads, fetch === first ? firstRoundExpansion(searcher) : undefined).forEach((candidates, n) => {
      if (candidates.length < fetch) covered = true; // every poster that passes the filter is among them
      else fetched[open[n]!] = candidates;
      for (const key of candidates) if (!scored.has(key)) fresh.add(key);
    });
    const ranked = add([...fresh]);
    if (covered) return ranked;
    const reach = (i: number) => Math.min(...fetched[i]!.map((key) => scored.get(key)?.similarities[i] ?? Number.POSITIVE_INFINITY));
    // A poster not yet fetched is no nearer any positive than that positive's reach, so it cannot
    // beat the last of the best `wanted` if their best similarity is at least that reach.
    const top = ranked.slice(0, wanted);
    const last = top.length === wanted && top.every((r) => r.relevance > 0) ? top[wanted - 1]!.best : Number.NEGATIVE_INFINITY;
    open = open.filter((i) => reach(i) > last);
    if (open.length === 0 || fetch >= MAX_CANDIDATES_PER_POSITIVE) return ranked;
  }
}

/** The expansion of best_score's first searches (see FIRST_ROUND_EXPANSION_SHARE). */
export function firstRoundExpansion(searcher: Searcher): number {
  const share = searcher.size < NARROW_FIRST_ROUND_BELOW ? FIRST_ROUND_EXPANSION_SHARE.small : FIRST_ROUND_EXPANSION_SHARE.large;
  return Math.ceil(searcher.expansion * share);
}
