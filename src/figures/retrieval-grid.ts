import { join } from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';
import { exactKnn, storedVectors } from '../eval/knn.js';
import type { Poster } from '../state/catalog.js';
import type { EmbeddingSet } from '../state/embeddings.js';
import { fit, svgDocument, text, writePng } from './svg.js';

export const GRID_NEIGHBOURS = 4;

const IMAGE = { width: 160, height: 240 };
const COLUMN = 200;
const MARGIN = 30;
const HEADER = 120;
const LABEL = 78;
const ROW = IMAGE.height + LABEL + 24;
const SAME = '#2e8b57';
const OTHER = '#c8c8c8';

export interface GridRow {
  query: Poster;
  neighbours: { poster: Poster; similarity: number }[];
}

/** Each query's nearest gallery posters by exact search; a query is never its own neighbour. */
export function gridRows(set: EmbeddingSet, version: string, queries: Poster[], gallery: Poster[]): GridRow[] {
  const stored = storedVectors(set);
  const found = exactKnn(stored.select(queries, version), stored.select(gallery, version), GRID_NEIGHBOURS);
  return queries.map((query, q) => {
    const neighbours: GridRow['neighbours'] = [];
    for (let i = 0; i < found.k; i++) {
      const row = found.indices[q * found.k + i]!;
      if (row >= 0) neighbours.push({ poster: gallery[row]!, similarity: found.similarities[q * found.k + i]! });
    }
    return { query, neighbours };
  });
}

function name(poster: Poster): string {
  const title = poster.title ?? poster.id;
  return poster.year ? `${title} (${poster.year})` : title;
}

/** A poster's tile: its image and three label lines under it, in a frame. */
function tile(x: number, y: number, poster: Poster, frame: string, last: { text: string; fill: string; weight?: 'bold' }): string[] {
  const width = COLUMN - 20;
  const body = [
    `<rect x="${x - 4}" y="${y - 4}" width="${IMAGE.width + 8}" height="${IMAGE.height + 8}" fill="none" stroke="${frame}" stroke-width="4" rx="3"/>`,
  ];
  const labelY = y + IMAGE.height + 24;
  body.push(text(x, labelY, fit(name(poster), width, 13), { size: 13, weight: 'bold' }));
  body.push(text(x, labelY + 19, fit(poster.genres.join(', '), width, 12), { size: 12, fill: '#444' }));
  body.push(text(x, labelY + 38, fit(last.text, width, 12), { size: 12, fill: last.fill, weight: last.weight }));
  return body;
}

/**
 * The paper's Fig. 8: a row per query, the query then its nearest gallery posters, each labelled
 * with its genres and cosine similarity; a green frame marks a neighbour of the query's single genre.
 */
export async function writeRetrievalGrid(rows: GridRow[], dataDir: string, caption: { model: string; queries: string; gallery: string }, file: string): Promise<void> {
  const width = MARGIN * 2 + COLUMN * (GRID_NEIGHBOURS + 1) + 20;
  const height = HEADER + rows.length * ROW + 10;
  const body: string[] = [];
  const columnX = (c: number) => MARGIN + c * COLUMN + (c > 0 ? 20 : 0);
  body.push(text(MARGIN, 36, fit(`Nearest posters, ${caption.model}`, width - 2 * MARGIN, 22), { size: 22, weight: 'bold' }));
  body.push(text(MARGIN, 60, fit(`${caption.queries}; their ${GRID_NEIGHBOURS} nearest among ${caption.gallery} (exact search, cosine similarity).`, width - 2 * MARGIN, 14), { size: 14, fill: '#555' }));
  body.push(text(MARGIN, 80, 'Green frame and ✓: same single genre as the query (a Recall@k hit).', { size: 14, fill: SAME }));
  body.push(text(columnX(0), HEADER - 12, 'Query', { size: 15, weight: 'bold' }));
  for (let c = 1; c <= GRID_NEIGHBOURS; c++) body.push(text(columnX(c), HEADER - 12, `Neighbour ${c}`, { size: 15, weight: 'bold' }));
  const dividerX = MARGIN + COLUMN + 2;
  body.push(`<line x1="${dividerX}" y1="${HEADER - 30}" x2="${dividerX}" y2="${height - 10}" stroke="#999" stroke-dasharray="4 4"/>`);

  const overlays: OverlayOptions[] = [];
  const place = async (poster: Poster, x: number, y: number) => {
    const input = await sharp(join(dataDir, poster.imagePath))
      .rotate()
      .resize(IMAGE.width, IMAGE.height, { fit: 'contain', background: '#ffffff' })
      .flatten({ background: '#ffffff' })
      .toBuffer();
    overlays.push({ input, left: Math.round(x), top: Math.round(y) });
  };
  for (const [r, row] of rows.entries()) {
    const y = HEADER + r * ROW;
    await place(row.query, columnX(0), y);
    body.push(...tile(columnX(0), y, row.query, '#333', { text: `query, ${row.query.split ?? 'no'} split`, fill: '#333' }));
    for (const [i, neighbour] of row.neighbours.entries()) {
      const same = neighbour.poster.singleGenre === row.query.singleGenre;
      await place(neighbour.poster, columnX(i + 1), y);
      body.push(
        ...tile(columnX(i + 1), y, neighbour.poster, same ? SAME : OTHER, {
          text: `similarity ${neighbour.similarity.toFixed(3)}${same ? ' ✓' : ''}`,
          fill: same ? SAME : '#333',
          weight: same ? 'bold' : undefined,
        }),
      );
    }
  }
  await writePng(file, svgDocument(width, height, body), overlays);
}
