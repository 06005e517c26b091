import type { CatalogMap } from './map-cache.js';
import { genreColours, OTHER_COLOUR } from './palette.js';
import { svgDocument, text, writePng } from './svg.js';

const PLOT = { x: 40, y: 100, size: 1100 };
const LEGEND_X = PLOT.x + PLOT.size + 50;
const WIDTH = LEGEND_X + 330;
const HEIGHT = PLOT.y + PLOT.size + 40;

/** The catalog's embedding map as a PNG: one dot per poster, coloured by its single genre, with a legend. */
export async function writeMapFigure(map: CatalogMap, file: string): Promise<void> {
  const { legend, colourOf } = genreColours(map.points.map((p) => p.poster.singleGenre));
  const rank = new Map(legend.map((entry, i) => [entry.colour, i]));
  // Grey first, then the rarer named genres over the common ones, so that small groups stay visible.
  const order = [...map.points].sort((a, b) => {
    const ca = colourOf(a.poster.singleGenre);
    const cb = colourOf(b.poster.singleGenre);
    if (ca === OTHER_COLOUR || cb === OTHER_COLOUR) return (ca === OTHER_COLOUR ? 0 : 1) - (cb === OTHER_COLOUR ? 0 : 1);
    return rank.get(ca)! - rank.get(cb)!;
  });
  const radius = map.points.length > 2000 ? 2.6 : 4;
  const body: string[] = [];
  body.push(text(PLOT.x, 42, `Embedding map of ${map.points.length.toLocaleString('en-US')} catalog posters, ${map.modelVersion}`, { size: 24, weight: 'bold' }));
  body.push(
    text(
      PLOT.x,
      72,
      `UMAP of the ${map.params.nNeighbors}-nearest-neighbour graph (min_dist ${map.params.minDist}, seed ${map.params.seed}); colour: single genre. Axes have no units.`,
      { size: 16, fill: '#555' },
    ),
  );
  body.push(`<rect x="${PLOT.x}" y="${PLOT.y}" width="${PLOT.size}" height="${PLOT.size}" fill="#fafafa" stroke="#ddd"/>`);
  const inner = PLOT.size - 40;
  body.push('<g fill-opacity="0.75">');
  for (const point of order) {
    const cx = PLOT.x + 20 + point.x * inner;
    const cy = PLOT.y + 20 + (1 - point.y) * inner;
    body.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${radius}" fill="${colourOf(point.poster.singleGenre)}"/>`);
  }
  body.push('</g>');
  body.push(text(LEGEND_X, PLOT.y + 24, 'Single genre (posters)', { size: 18, weight: 'bold' }));
  legend.forEach((entry, i) => {
    const y = PLOT.y + 64 + i * 34;
    body.push(`<circle cx="${LEGEND_X + 9}" cy="${y - 6}" r="9" fill="${entry.colour}"/>`);
    body.push(text(LEGEND_X + 28, y, `${entry.genre} (${entry.count.toLocaleString('en-US')})`, { size: 17 }));
  });
  await writePng(file, svgDocument(WIDTH, HEIGHT, body));
}
