import type { MetricName, MetricValues, Summary } from '../eval/metrics.js';
import { fit, svgDocument, text, wrap, writePng } from './svg.js';

export interface BarSeries {
  metric: MetricName;
  label: string;
  colour: string;
}

export const RECALL_SERIES: BarSeries[] = [
  { metric: 'recall@1', label: 'Recall@1', colour: '#9ecae1' },
  { metric: 'recall@3', label: 'Recall@3', colour: '#4292c6' },
  { metric: 'recall@8', label: 'Recall@8', colour: '#08519c' },
];

export const MAJORITY_SERIES: BarSeries[] = [
  { metric: 'majority@1', label: 'majority@1', colour: '#fdd0a2' },
  { metric: 'majority@3', label: 'majority@3', colour: '#fd8d3c' },
  { metric: 'majority@5', label: 'majority@5', colour: '#d94801' },
  { metric: 'majority@8', label: 'majority@8', colour: '#7f2704' },
];

const WIDTH = 1200;
const LABELS = 240;
const PLOT = { x: 40 + LABELS, width: 820 };
const TOP = 170;
const BAR = 11;
const GAP = 3;
const GROUP_GAP = 16;

interface Group {
  label: string;
  detail: string;
  values: MetricValues;
}

/**
 * Horizontal grouped bars, one group per single genre of the queries (most queries first), then
 * the micro and macro averages: the evaluation's per-genre table drawn, from the same Summary.
 */
export async function writeGenreBars(summary: Summary, series: BarSeries[], caption: { title: string; subtitle: string }, file: string): Promise<void> {
  const genres = Object.entries(summary.perGenre)
    .filter(([, row]) => row.queries > 0)
    .sort((a, b) => b[1].queries - a[1].queries || a[0].localeCompare(b[0]));
  const groups: Group[] = genres.map(([genre, row]) => ({ label: genre, detail: `${row.queries} ${row.queries === 1 ? 'query' : 'queries'}`, values: row.metrics }));
  const averages: Group[] = [
    { label: 'micro', detail: `mean over ${summary.queries} queries`, values: summary.micro },
    { label: 'macro', detail: `mean over ${genres.length} genres`, values: summary.macro },
  ];
  const groupHeight = series.length * (BAR + GAP) - GAP + GROUP_GAP;
  const averagesTop = TOP + groups.length * groupHeight + 24;
  const bottom = averagesTop + averages.length * groupHeight;
  const height = bottom + 50;
  const x = (value: number) => PLOT.x + value * PLOT.width;
  const body: string[] = [];

  body.push(text(40, 40, fit(caption.title, WIDTH - 80, 22), { size: 22, weight: 'bold' }));
  wrap(caption.subtitle, WIDTH - 80, 14)
    .slice(0, 2)
    .forEach((line, i) => body.push(text(40, 66 + i * 19, line, { size: 14, fill: '#555' })));
  let legendX = PLOT.x;
  for (const s of series) {
    body.push(`<rect x="${legendX}" y="108" width="16" height="16" fill="${s.colour}"/>`);
    body.push(text(legendX + 22, 121, s.label, { size: 14 }));
    legendX += 40 + s.label.length * 9;
  }
  for (let tick = 0; tick <= 10; tick += 2) {
    const tx = x(tick / 10);
    body.push(`<line x1="${tx}" y1="${TOP - 10}" x2="${tx}" y2="${bottom}" stroke="${tick === 0 ? '#666' : '#e3e3e3'}"/>`);
    body.push(text(tx, TOP - 16, (tick / 10).toFixed(1), { size: 12, anchor: 'middle', fill: '#666' }));
    body.push(text(tx, bottom + 18, (tick / 10).toFixed(1), { size: 12, anchor: 'middle', fill: '#666' }));
  }
  body.push(`<line x1="40" y1="${averagesTop - 14}" x2="${PLOT.x + PLOT.width}" y2="${averagesTop - 14}" stroke="#999"/>`);

  const drawGroup = (group: Group, top: number) => {
    const middle = top + (groupHeight - GROUP_GAP) / 2;
    body.push(text(PLOT.x - 12, middle, fit(group.label, LABELS - 20, 15), { size: 15, anchor: 'end', weight: 'bold' }));
    body.push(text(PLOT.x - 12, middle + 15, group.detail, { size: 11, anchor: 'end', fill: '#666' }));
    series.forEach((s, i) => {
      const y = top + i * (BAR + GAP);
      const value = group.values[s.metric];
      if (value === null) return;
      body.push(`<rect x="${PLOT.x}" y="${y}" width="${(value * PLOT.width).toFixed(1)}" height="${BAR}" fill="${s.colour}"/>`);
      body.push(text(x(value) + 4, y + BAR - 1.5, value.toFixed(2), { size: 10, fill: '#333' }));
    });
  };
  groups.forEach((group, i) => drawGroup(group, TOP + i * groupHeight));
  averages.forEach((group, i) => drawGroup(group, averagesTop + i * groupHeight));
  await writePng(file, svgDocument(WIDTH, height, body));
}
