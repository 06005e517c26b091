import { seededRandom } from '../figures/random.js';

/**
 * A second, visual measure of similarity: posters of the same film series (sequels, franchises)
 * tend to share a look, so for a query whose series has a member in the gallery, how often is one
 * among its k nearest? Series come from titles (92% of the demo catalog has one) by these rules,
 * checked by hand on a sample (docs/evaluation/series.md):
 * - lower case; a trailing "(…)" dropped; the title cut at the first ": ", " - ", "–" or "—";
 * - a leading "the", "a" or "an" dropped;
 * - a trailing sequel marker dropped with what follows it: a digit 1–9 ("Toy Story 2", "Rio 2: …";
 *   "Apollo 13" is a title, not a sequel), a Roman numeral II–X ("Blade II"), or
 *   "part / chapter / episode / vol. / volume …";
 * - punctuation removed ("Wayne's World 2" → "waynes world").
 * A stem of one word cut at a colon is not a series ("Mission: Impossible" is not "The Mission",
 * "2012: Time for Change" not "2012"): one-word stems count only with a sequel marker ("Rio 2").
 * Titles with the same stem form a series when there are at least two and one of them is marked
 * (a sequel marker or a subtitle).
 */
const SEQUEL = /\s+(?:[1-9]|ii|iii|iv|v|vi|vii|viii|ix|x|(?:part|chapter|episode|vol\.?|volume)\s+\S+)(?:\s.*)?$/;

/** A title's series stem, and whether the title itself marks a sequel or a subtitle; null without a title. */
export function seriesKey(title: string | null): { stem: string; marked: boolean } | null {
  if (!title) return null;
  const lower = title.toLowerCase().replace(/\s*\(.*?\)\s*$/, '');
  const [head] = lower.split(/\s*[:\u2013\u2014]\s+|\s+-\s+/);
  const cutAtColon = head!.length < lower.length;
  let stem = head!.replace(/^(?:the|a|an)\s+/, '');
  const sequel = SEQUEL.test(stem);
  stem = stem.replace(SEQUEL, '').replace(/[^\p{L}\p{N}\s]/gu, '').replace(/\s+/g, ' ').trim();
  if (!stem) return null;
  if (cutAtColon && !sequel && !stem.includes(' ')) return null;
  return { stem, marked: sequel || cutAtColon };
}

/**
 * Series: titles sharing a stem, at least two, at least one of them marked as a sequel or a subtitle
 * ("Heat" and "The Heat" are two films, not a series). Stem → poster keys.
 */
export function seriesOf(posters: { key: number; title: string | null }[]): Map<string, number[]> {
  const groups = new Map<string, { keys: number[]; marked: boolean }>();
  for (const poster of posters) {
    const key = seriesKey(poster.title);
    if (!key) continue;
    const group = groups.get(key.stem) ?? { keys: [], marked: false };
    group.keys.push(poster.key);
    group.marked ||= key.marked;
    groups.set(key.stem, group);
  }
  return new Map([...groups].filter(([, g]) => g.keys.length >= 2 && g.marked).map(([stem, g]) => [stem, g.keys]));
}

export const SERIES_KS = [1, 8] as const;

export interface SeriesFigures {
  /** Queries whose series has a member in the gallery. */
  queries: number;
  /** Share of them with a member among the k nearest, per k. */
  hits: Record<string, number | null>;
  /** Per query, 1 when a member is among the 8 nearest (for paired comparisons). */
  perQuery: number[];
}

/**
 * For each query with a series member in the gallery: is one among its k nearest? `nearest[q]`
 * holds the gallery keys of query q's neighbours, nearest first (the query itself never among them).
 */
export function seriesFigures(queryKeys: number[], nearest: number[][], galleryKeys: Set<number>, series: Map<string, number[]>): SeriesFigures {
  const seriesOfKey = new Map<number, number[]>();
  for (const members of series.values()) for (const key of members) seriesOfKey.set(key, members);
  const counted: number[][] = [];
  queryKeys.forEach((key, q) => {
    const mates = (seriesOfKey.get(key) ?? []).filter((k) => k !== key && galleryKeys.has(k));
    if (mates.length === 0) return;
    const wanted = new Set(mates);
    counted.push(SERIES_KS.map((k) => (nearest[q]!.slice(0, k).some((n) => wanted.has(n)) ? 1 : 0)));
  });
  const share = (i: number) => (counted.length ? counted.reduce((s, c) => s + c[i]!, 0) / counted.length : null);
  return {
    queries: counted.length,
    hits: Object.fromEntries(SERIES_KS.map((k, i) => [`@${k}`, share(i)])),
    perQuery: counted.map((c) => c[SERIES_KS.indexOf(8)]!),
  };
}

/**
 * A paired bootstrap of the difference in a per-query 0/1 figure between two systems on the same
 * queries: the mean difference and its 95% interval (10,000 resamples, seeded). An interval above 0
 * says the first system is better by more than the choice of queries explains.
 */
export function pairedDifference(a: number[], b: number[], resamples = 10_000, seed = 1): { mean: number; low: number; high: number } | null {
  if (a.length !== b.length || a.length === 0) return null;
  const diff = a.map((v, i) => v - b[i]!);
  const random = seededRandom(seed);
  const means: number[] = [];
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (let i = 0; i < diff.length; i++) sum += diff[Math.floor(random() * diff.length)]!;
    means.push(sum / diff.length);
  }
  means.sort((x, y) => x - y);
  return { mean: diff.reduce((s, d) => s + d, 0) / diff.length, low: means[Math.floor(0.025 * resamples)]!, high: means[Math.floor(0.975 * resamples)]! };
}
