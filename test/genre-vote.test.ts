import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { majorityGenre, voteGenres } from '../src/search/genre-vote.js';

describe('genre vote', () => {
  it('weights each neighbour by (1 + similarity) / 2 over all its genres, normalised to 1', () => {
    const vote = voteGenres(
      [
        { genres: ['Comedy', 'Drama'], singleGenre: 'Comedy', similarity: 1 }, // weight 1 to each
        { genres: ['Drama'], singleGenre: 'Drama', similarity: 0 }, // weight 0.5
      ],
      ['Action', 'Comedy', 'Drama'],
    );
    // totals: Comedy 1, Drama 1.5, Action 0; sum 2.5
    assert.equal(vote.genre, 'Drama');
    assert.deepEqual(vote.scores, [
      { genre: 'Drama', score: 0.6 },
      { genre: 'Comedy', score: 0.4 },
      { genre: 'Action', score: 0 },
    ]);
  });

  it('lists genres outside the known list too, and scores sum to 1', () => {
    const vote = voteGenres([{ genres: ['Western'], singleGenre: 'Western', similarity: -0.5 }], ['Comedy']);
    assert.equal(vote.genre, 'Western');
    assert.equal(vote.scores.reduce((a, s) => a + s.score, 0), 1);
    assert.equal(vote.scores.length, 2);
  });

  it('has no prediction without voters', () => {
    const vote = voteGenres([], ['Comedy']);
    assert.equal(vote.genre, null);
    assert.deepEqual(vote.majority, { genre: null, votes: 0 });
  });

  it("majority counts single genres and breaks ties by the closest voter", () => {
    const voters = [
      { genres: ['Drama'], singleGenre: 'Drama', similarity: 0.5 },
      { genres: ['Comedy'], singleGenre: 'Comedy', similarity: 0.9 },
      { genres: ['Drama'], singleGenre: 'Drama', similarity: 0.4 },
      { genres: ['Comedy'], singleGenre: 'Comedy', similarity: 0.3 },
      { genres: ['Action'], singleGenre: 'Action', similarity: 0.95 },
    ];
    assert.deepEqual(majorityGenre(voters), { genre: 'Comedy', votes: 2 });
    assert.deepEqual(majorityGenre(voters.slice(0, 3)), { genre: 'Drama', votes: 2 });
  });
});
