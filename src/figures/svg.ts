import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';

/** Fonts librsvg finds through fontconfig (Debian: fonts-dejavu-core), then whatever sans-serif there is. */
export const FONT = "'DejaVu Sans', 'Liberation Sans', Arial, sans-serif";

/** DejaVu Sans's mean advance width per pixel of font size, for fitting labels without a layout engine. */
const CHAR_WIDTH = 0.58;

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `text` cut with an ellipsis so that it fits `width` pixels at `size`. */
export function fit(text: string, width: number, size: number): string {
  const max = Math.floor(width / (size * CHAR_WIDTH));
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1)).trimEnd()}…`;
}

/** `text` broken into lines of at most `width` pixels at `size`, at spaces. */
export function wrap(text: string, width: number, size: number): string[] {
  const max = Math.floor(width / (size * CHAR_WIDTH));
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > max) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

export function textWidth(text: string, size: number): number {
  return text.length * size * CHAR_WIDTH;
}

export interface TextOptions {
  size?: number;
  weight?: 'normal' | 'bold';
  anchor?: 'start' | 'middle' | 'end';
  fill?: string;
  transform?: string;
}

export function text(x: number, y: number, content: string, options: TextOptions = {}): string {
  const { size = 14, weight = 'normal', anchor = 'start', fill = '#222', transform } = options;
  return (
    `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-family="${FONT}" font-size="${size}" font-weight="${weight}" ` +
    `text-anchor="${anchor}" fill="${fill}"${transform ? ` transform="${transform}"` : ''}>${escapeXml(content)}</text>`
  );
}

export function svgDocument(width: number, height: number, body: string[], background = '#ffffff'): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<rect width="${width}" height="${height}" fill="${background}"/>${body.join('')}</svg>`
  );
}

/**
 * Rasterises an SVG with sharp (librsvg), optionally compositing images over it, into a PNG file.
 * Quantised to a 256-colour palette: a quarter of the size, which matters for figures committed
 * to the repository, with no visible loss on charts and little on the posters.
 */
export async function writePng(file: string, svg: string, overlays: OverlayOptions[] = []): Promise<void> {
  mkdirSync(dirname(file), { recursive: true });
  await sharp(Buffer.from(svg), { density: 72 }).composite(overlays).png({ palette: true, quality: 90, effort: 10 }).toFile(file);
}
