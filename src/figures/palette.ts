/**
 * Colours of the single genres on the maps (the PNG and the demo page, public/demo.js, which
 * keeps a copy): the most common genres get Tableau's 10 colours, the rest share grey.
 */
export const GENRE_COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#17becf'];
export const OTHER_COLOUR = '#b0b0b0';
export const OTHER = 'Other';

export interface GenreColour {
  genre: string;
  count: number;
  colour: string;
}

/** Legend entries, most common genre first, with the genres beyond the palette pooled as "Other". */
export function genreColours(singleGenres: string[]): { legend: GenreColour[]; colourOf: (genre: string) => string } {
  const counts = new Map<string, number>();
  for (const genre of singleGenres) counts.set(genre, (counts.get(genre) ?? 0) + 1);
  const ranked = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const named = ranked.slice(0, GENRE_COLOURS.length);
  const rest = ranked.slice(GENRE_COLOURS.length);
  const colours = new Map(named.map(([genre], i) => [genre, GENRE_COLOURS[i]!]));
  const legend = named.map(([genre, count]) => ({ genre, count, colour: colours.get(genre)! }));
  if (rest.length) legend.push({ genre: `${OTHER}, ${rest.length} genres`, count: rest.reduce((n, [, c]) => n + c, 0), colour: OTHER_COLOUR });
  return { legend, colourOf: (genre) => colours.get(genre) ?? OTHER_COLOUR };
}
