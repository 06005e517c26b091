/** A neighbour as the vote sees it. */
export interface Voter {
  genres: string[];
  singleGenre: string;
  /** Cosine similarity to the query, in [-1, 1]. */
  similarity: number;
}

export interface GenreScore {
  genre: string;
  score: number;
}

export interface GenreVote {
  /** The genre with the highest score; null with no voters. */
  genre: string | null;
  /** Every known genre, highest first; scores sum to 1 when there are voters. */
  scores: GenreScore[];
  /** The paper's rule: the most common single genre among the neighbours. */
  majority: { genre: string | null; votes: number };
}

/**
 * Each neighbour votes for every one of its genres with weight (1 + similarity) / 2, so closer
 * posters count more and no weight is negative; the totals are normalised to sum to 1.
 * Ties (equal score, or equal majority count) go to the genre whose voters are more similar.
 */
export function voteGenres(voters: Voter[], knownGenres: string[]): GenreVote {
  const totals = new Map<string, number>(knownGenres.map((g) => [g, 0]));
  for (const voter of voters) {
    const weight = (1 + voter.similarity) / 2;
    for (const genre of voter.genres) totals.set(genre, (totals.get(genre) ?? 0) + weight);
  }
  const sum = [...totals.values()].reduce((a, b) => a + b, 0);
  const scores = [...totals.entries()]
    .map(([genre, total]) => ({ genre, score: sum > 0 ? total / sum : 0 }))
    .sort((a, b) => b.score - a.score || a.genre.localeCompare(b.genre));
  return { genre: sum > 0 ? scores[0]!.genre : null, scores, majority: majorityGenre(voters) };
}

/** Multi-label decision rule of the vote: every genre whose score is at least this fraction of the top score. */
export const MULTI_LABEL_RATIO = 0.5;

/**
 * Genres the vote predicts: the top genre and every genre scoring at least MULTI_LABEL_RATIO of its
 * score. Label-free (unlike predicting the true number of genres), so a client can apply it too.
 */
export function votedGenres(vote: GenreVote): string[] {
  if (vote.genre === null) return [];
  const cut = vote.scores[0]!.score * MULTI_LABEL_RATIO;
  return vote.scores.filter((s) => s.score > 0 && s.score >= cut).map((s) => s.genre);
}

export function majorityGenre(voters: Voter[]): { genre: string | null; votes: number } {
  const counts = new Map<string, { votes: number; best: number }>();
  for (const voter of voters) {
    const entry = counts.get(voter.singleGenre) ?? { votes: 0, best: -Infinity };
    entry.votes += 1;
    entry.best = Math.max(entry.best, voter.similarity);
    counts.set(voter.singleGenre, entry);
  }
  let winner: string | null = null;
  let top = { votes: 0, best: -Infinity };
  for (const [genre, entry] of counts) {
    if (entry.votes > top.votes || (entry.votes === top.votes && entry.best > top.best)) {
      winner = genre;
      top = entry;
    }
  }
  return { genre: winner, votes: top.votes };
}
