import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  averagePrecisionAtR,
  evaluateQueries,
  genreCounts,
  predictedGenres,
  scoreQuery,
  type QueryOutcome,
} from '../src/eval/metrics.js';
import type { Voter } from '../src/search/genre-vote.js';

/** Neighbours labelled by single genre only, nearest first, similarities falling from 0.9. */
function singles(...genres: string[]): Voter[] {
  return genres.map((g, i) => ({ singleGenre: g, genres: [g], similarity: 0.9 - i * 0.05 }));
}

function query(singleGenre: string, neighbours: Voter[], relevant = 0, genres = [singleGenre]): QueryOutcome {
  return { singleGenre, genres, neighbours, relevant };
}

const close = (actual: number | null, expected: number) => {
  assert.notEqual(actual, null);
  assert.ok(Math.abs(actual! - expected) < 1e-9, `${actual} is not ${expected}`);
};

describe('eval metrics', () => {
  it('Recall@k: a neighbour among the first k has the query single genre', () => {
    const { values } = scoreQuery(query('Comedy', singles('Drama', 'Action', 'Comedy', 'Drama', 'Drama', 'Drama', 'Drama', 'Drama'), 1));
    assert.equal(values['recall@1'], 0);
    assert.equal(values['recall@3'], 1);
    assert.equal(values['recall@8'], 1);
    const never = scoreQuery(query('Horror', singles('Drama', 'Action', 'Comedy', 'Drama', 'Drama', 'Drama', 'Drama', 'Drama', 'Horror'), 1));
    assert.equal(never.values['recall@8'], 0, 'the 9th neighbour is beyond k = 8');
  });

  it('majority@k: a tie in the count goes to the genre of the most similar neighbour, not to the query', () => {
    const neighbours: Voter[] = [
      { singleGenre: 'Drama', genres: ['Drama'], similarity: 0.9 },
      { singleGenre: 'Comedy', genres: ['Comedy'], similarity: 0.8 },
      { singleGenre: 'Comedy', genres: ['Comedy'], similarity: 0.7 },
      { singleGenre: 'Drama', genres: ['Drama'], similarity: 0.6 },
      { singleGenre: 'Action', genres: ['Action'], similarity: 0.5 },
    ];
    // k=1: Drama. k=3: Comedy 2, Drama 1. k=5: Drama 2, Comedy 2 (tie: Drama's best 0.9 > Comedy's 0.8), Action 1.
    const comedy = scoreQuery(query('Comedy', neighbours, 2)).values;
    assert.deepEqual([comedy['majority@1'], comedy['majority@3'], comedy['majority@5']], [0, 1, 0]);
    const drama = scoreQuery(query('Drama', neighbours, 2)).values;
    assert.deepEqual([drama['majority@1'], drama['majority@3'], drama['majority@5']], [1, 0, 1]);
    // The same tie with Comedy nearest goes to Comedy.
    const swapped = [neighbours[1]!, neighbours[0]!, neighbours[2]!, neighbours[3]!, neighbours[4]!].map((n, i) => ({ ...n, similarity: 0.9 - i * 0.1 }));
    assert.equal(scoreQuery(query('Comedy', swapped, 2)).values['majority@5'], 1);
    // With fewer neighbours than k, the vote is over those there are.
    assert.equal(scoreQuery(query('Drama', neighbours.slice(0, 1), 1)).values['majority@8'], 1);
  });

  it('MAP@R averages the precision at each relevant rank among the first R, divided by R', () => {
    // relevance 1 0 1 1: with R = 3, (1/1 + 2/3) / 3; the 4th rank lies beyond R.
    close(averagePrecisionAtR([true, false, true, true], 3), (1 + 2 / 3) / 3);
    close(averagePrecisionAtR([true, false, true, true], 4), (1 + 2 / 3 + 3 / 4) / 4);
    close(averagePrecisionAtR([true, true, false], 2), 1);
    close(averagePrecisionAtR([false, false, true], 1), 0);
    assert.equal(averagePrecisionAtR([], 0), 0, 'a genre absent from the gallery is a miss');
    assert.throws(() => averagePrecisionAtR([true], 2), /needs 2 neighbours/);
    const scored = scoreQuery(query('Comedy', singles('Comedy', 'Drama', 'Comedy', 'Comedy', 'Action', 'Action', 'Action', 'Action'), 3));
    close(scored.values['map@r'], (1 + 2 / 3) / 3);
  });

  it('R is the number of gallery items sharing the single genre', () => {
    const gallery = [
      { singleGenre: 'Comedy', genres: ['Comedy', 'Drama'] },
      { singleGenre: 'Drama', genres: ['Drama', 'Comedy'] },
      { singleGenre: 'Comedy', genres: ['Comedy'] },
    ];
    assert.deepEqual([...genreCounts(gallery)], [
      ['Comedy', 2],
      ['Drama', 1],
    ]);
  });

  it('micro averages over queries, macro over the query genres present', () => {
    // Nine Comedy queries found, one Horror query missed: micro 0.9, macro (1 + 0) / 2.
    const queries = [
      ...Array.from({ length: 9 }, () => query('Comedy', singles('Comedy'), 1)),
      query('Horror', singles('Comedy'), 1),
    ];
    const summary = evaluateQueries(queries);
    assert.equal(summary.queries, 10);
    close(summary.micro['recall@1'], 0.9);
    close(summary.macro['recall@1'], 0.5);
    assert.deepEqual(Object.keys(summary.perGenre), ['Comedy', 'Horror']);
    assert.equal(summary.perGenre.Comedy!.queries, 9);
    close(summary.perGenre.Comedy!.metrics['recall@1'], 1);
    close(summary.perGenre.Horror!.metrics['recall@1'], 0);
    close(summary.macro['map@r'], 0.5);
  });

  it("the paper's lenient rule counts any shared genre, and a query that finds itself always hits", () => {
    const self: Voter = { singleGenre: 'Drama', genres: ['Drama', 'Romance'], similarity: 1 };
    const romcom: Voter = { singleGenre: 'Comedy', genres: ['Comedy', 'Romance'], similarity: 0.7 };
    const honest = query('Drama', [romcom], 1, ['Drama', 'Romance']);
    assert.equal(scoreQuery(honest, 'single').values['recall@1'], 0);
    assert.equal(scoreQuery(honest, 'any').values['recall@1'], 1, 'Romance is shared');
    assert.equal(scoreQuery(honest, 'any').values['majority@1'], 0, 'the majority single genre, Comedy, is not among Drama|Romance');
    assert.equal(scoreQuery(honest, 'any').values['map@r'], null, 'MAP@R is defined for the single-genre rule only');
    const paper = query('Drama', [self, romcom], 1, ['Drama', 'Romance']);
    assert.equal(scoreQuery(paper, 'any').values['recall@1'], 1);
    assert.equal(scoreQuery(paper, 'any').values['majority@1'], 1);
  });

  it("the genre vote: top genre for accuracy and hit@1, every genre at ≥ half the top score for F1", () => {
    const n = (genres: string[]): Voter => ({ singleGenre: genres[0]!, genres, similarity: 1 });
    // Weights are 1: Comedy 3, Romance 2, Drama 1, Action 1, Horror 1 (the 6th neighbour is beyond k = 5).
    const neighbours = [n(['Comedy', 'Romance']), n(['Drama', 'Romance']), n(['Comedy']), n(['Action', 'Comedy']), n(['Horror']), n(['Drama'])];
    assert.deepEqual(predictedGenres(neighbours), { top: 'Comedy', genres: ['Comedy', 'Romance'] });
    const scored = scoreQuery(query('Comedy', neighbours, 1, ['Comedy', 'Drama']));
    assert.equal(scored.values.vote_accuracy, 1);
    assert.equal(scored.values['any_genre_hit@1'], 1);
    // Comedy true positive, Romance false positive, Drama false negative.
    const summary = evaluateQueries([query('Comedy', neighbours, 1, ['Comedy', 'Drama'])]);
    close(summary.micro.vote_f1, (2 * 1) / (2 * 1 + 1 + 1));
    close(summary.perGenre.Comedy!.metrics.vote_f1, 1);
    close(summary.perGenre.Drama!.metrics.vote_f1, 0);
    assert.equal(summary.perGenre.Drama!.queries, 0);
    assert.equal(summary.perGenre.Drama!.labelled, 1);
    assert.equal(summary.perGenre.Romance, undefined, 'a genre only predicted has no row and stays out of the macro mean');
    close(summary.macro.vote_f1, 0.5);
    // A Drama|Comedy query whose single genre is Drama: the top genre Comedy is a hit among its genres, not for accuracy.
    const drama = scoreQuery(query('Drama', neighbours, 1, ['Drama', 'Comedy'])).values;
    assert.equal(drama['any_genre_hit@1'], 1);
    assert.equal(drama.vote_accuracy, 0);
  });

  it('no neighbours: every hit is 0, nothing is predicted', () => {
    const summary = evaluateQueries([query('Comedy', [], 0)]);
    for (const value of Object.values(summary.micro)) assert.equal(value, 0);
  });
});
