import { HSV_BINS } from './colour-histogram.js';
import type { Evaluation, SystemResult } from './evaluate.js';
import { ECE_BINS } from './genre-classifier.js';
import { MULTI_LABEL_RATIO } from '../search/genre-vote.js';
import { MAJORITY_KS, METRICS, RANKING_KS, RECALL_KS, VOTE_K, type GenreRow, type MetricName, type MetricValues } from './metrics.js';
import type { Ranking } from './ranking.js';

export const REPORT_FORMAT = 'marquee-eval/1';
const JSON_DECIMALS = 4;

const HEADINGS: Record<MetricName, string> = {
  'recall@1': 'Recall@1',
  'recall@3': 'Recall@3',
  'recall@8': 'Recall@8',
  'majority@1': 'maj@1',
  'majority@3': 'maj@3',
  'majority@5': 'maj@5',
  'majority@8': 'maj@8',
  'any_genre_hit@1': 'any-genre hit@1',
  'map@r': 'MAP@R',
  vote_accuracy: 'vote acc.',
  vote_f1: 'vote F1',
};

const DEFINITIONS = [
  `**Recall@k** (k = ${RECALL_KS.join(', ')}): one of the k nearest gallery posters has the query's single genre.`,
  `**maj@k** (k = ${MAJORITY_KS.join(', ')}): the most common single genre among the k nearest is the query's. ` +
    "A tie in the count goes to the genre with the most similar poster (the rule of the genre endpoint's `majority`), " +
    "never to the query's genre by luck.",
  `**any-genre hit@1**: the top genre of the genre endpoint's vote (k = ${VOTE_K}, each neighbour votes for all its genres ` +
    "with weight (1 + similarity) / 2) is among the query's genres.",
  "**MAP@R**: mean average precision over the first R neighbours, R = the number of gallery posters with the query's " +
    "single genre (pytorch-metric-learning's definition); a query whose genre the gallery lacks scores 0.",
  "**vote acc.**: the vote's top genre equals the query's single genre. **vote F1**: multi-label F1 over the query's genres, " +
    `predicting every genre whose vote score is at least ${MULTI_LABEL_RATIO} × the top score; micro pools true and false ` +
    "positives over genres, macro averages each genre's F1.",
  `**mAP, AUC** (k = ${RANKING_KS.join(', ')}): for each genre, the queries ranked by that genre's score in the vote of their ` +
    "k nearest neighbours (the genre endpoint's weights), a query being a positive when the genre is among its genres: " +
    "average precision and ROC AUC per genre (ties as scikit-learn counts them), averaged over the genres with both " +
    'positive and negative queries. Genre prevalence alone scores mAP = the mean share of queries per genre and AUC 0.5. ' +
    '**similarity spread**: the median over queries of the gap between the similarity of the 1st and of the 100th nearest ' +
    'gallery poster (how much `similarity` tells a user).',
  '**Genres as a classifier**: per query a probability for every genre of the gallery and a predicted set. A genre head: ' +
    'per-genre logistic regression on the features, trained on `train`, Platt-calibrated and thresholded (best F1) per genre on ' +
    `\`val\` (training/genre_head.py; the histogram's here, the same way). A vote: each genre's share of the vote of the ${VOTE_K} nearest, ` +
    `predicting the genres with at least ${MULTI_LABEL_RATIO} × the top share. Prevalence: each genre's share of the gallery, thresholds on \`val\`. ` +
    'mAP and mean AUC over the genres with a positive and a negative query; F1 micro pools every (query, genre) decision, macro ' +
    `averages each genre's; **ECE**: the expected calibration error over every (query, genre) pair, ${ECE_BINS} equal-width bins.`,
  '**series@k**: for each query whose film series (from titles: src/eval/series.ts, docs/evaluation/series.md) has a member in the ' +
    'gallery, whether one is among its k nearest.',
  "**micro** is the mean over queries; **macro** the mean over the single genres present among the queries of each genre's " +
    'mean (for F1: over the genres the queries carry).',
  "**always-majority-genre** answers every query with the gallery's posters of its most common single genre, so each of its " +
    "figures is the share of queries of that genre (its MAP@R too: it ranks all of that genre's posters first).",
  "**Paper's protocol**: every catalog poster queried against all of them, itself included, and a neighbour counts when it " +
    'shares any genre with the query. Shown only to make the difference visible; it is not a quality figure.',
];

function round(value: number): number {
  return Number.isInteger(value) ? value : Number(value.toFixed(JSON_DECIMALS));
}

/** JSON with keys sorted at every level and numbers rounded, so two reports diff line by line. */
export function stableStringify(value: unknown): string {
  const normalise = (v: unknown): unknown => {
    if (typeof v === 'number') return Number.isFinite(v) ? round(v) : null;
    if (Array.isArray(v)) return v.map(normalise);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, normalise((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(normalise(value), null, 2)}\n`;
}

function genreRowJson(row: GenreRow): Record<string, unknown> {
  return { queries: row.queries, labelled: row.labelled, ...row.metrics };
}

function rankingJson(ranking: Ranking): Record<string, unknown> {
  return { map: ranking.map, auc: ranking.auc, per_genre: ranking.perGenre };
}

function systemJson(system: SystemResult): Record<string, unknown> {
  return {
    label: system.label,
    protocol: system.protocol,
    gallery: system.gallery,
    queries: system.summary.queries,
    micro: system.summary.micro,
    macro: system.summary.macro,
    per_genre: Object.fromEntries(Object.entries(system.summary.perGenre).map(([genre, row]) => [genre, genreRowJson(row)])),
    genre_ranking: Object.fromEntries(system.summary.ranking.map((r) => [`k${r.k}`, rankingJson(r)])),
    ...(system.similaritySpread !== undefined ? { similarity_spread_1_100: system.similaritySpread } : {}),
    ...(system.series ? { same_series: { queries: system.series.queries, ...system.series.hits } } : {}),
  };
}

/** The evaluation as a JSON document: no timings, and no timestamp but `created_at`. */
export function toJsonDocument(evaluation: Evaluation, createdAt: Date): Record<string, unknown> {
  return {
    format: REPORT_FORMAT,
    created_at: createdAt.toISOString(),
    model_version: evaluation.modelVersion,
    base_model_version: evaluation.baseModelVersion,
    search: evaluation.search,
    queries: {
      source: evaluation.queries.source,
      count: evaluation.queries.count,
      in_catalog: evaluation.queries.inCatalog,
      skipped: evaluation.queries.skipped,
      genres_missing_from_gallery: evaluation.queries.genresMissingFromGallery,
    },
    gallery: evaluation.gallery,
    settings: {
      recall_k: RECALL_KS,
      majority_k: MAJORITY_KS,
      vote_k: VOTE_K,
      ranking_k: RANKING_KS,
      multi_label_ratio: MULTI_LABEL_RATIO,
      majority_tie_break: 'most similar voter',
      hsv_bins: HSV_BINS,
    },
    systems: Object.fromEntries(evaluation.systems.map((s) => [s.id, systemJson(s)])),
    genre_classifiers: Object.fromEntries(
      evaluation.genreSystems.map((g) => [
        g.id,
        { label: g.label, map: g.figures.map, auc: g.figures.auc, f1_micro: g.figures.f1Micro, f1_macro: g.figures.f1Macro, ece: g.figures.ece },
      ]),
    ),
    diversity: evaluation.diversity.map((d) => ({
      diversity: d.diversity,
      mean_pairwise_similarity: d.meanPairwiseSimilarity,
      vote_map: d.vote.map,
      vote_auc: d.vote.auc,
    })),
    same_series_model_minus_histogram_at_8: evaluation.seriesVsHistogram,
    index_recall_vs_exact: evaluation.indexRecallVsExact,
    notes: evaluation.notes,
  };
}

const fixed = (value: number | null | undefined) => (value === null || value === undefined ? '–' : value.toFixed(3));
const count = (n: number) => n.toLocaleString('en-US');

function table(headings: string[], rows: string[][]): string {
  return [
    `| ${headings.join(' | ')} |`,
    `|${headings.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

function describeSource(source: string, n: number): string {
  const [kind, name] = source.split(':');
  if (kind === 'split') return `${count(n)} posters of the \`${name}\` split`;
  if (kind === 'csv') return `${count(n)} posters of the external query set \`${name}\``;
  return `the whole catalog (${count(n)} posters)`;
}

function perGenreTable(system: SystemResult, columns: MetricName[], extra: 'labelled' | null): string {
  const rows = Object.entries(system.summary.perGenre)
    .filter(([, row]) => row.queries > 0 || extra === 'labelled')
    .sort((a, b) => b[1].queries - a[1].queries || b[1].labelled - a[1].labelled || a[0].localeCompare(b[0]))
    .map(([genre, row]) => [genre, String(row.queries), ...(extra ? [String(row.labelled)] : []), ...columns.map((m) => fixed(row.metrics[m]))]);
  const pick = (values: MetricValues) => columns.map((m) => fixed(values[m]));
  rows.push(['**micro**', String(system.summary.queries), ...(extra ? [''] : []), ...pick(system.summary.micro)]);
  rows.push(['**macro**', '', ...(extra ? [''] : []), ...pick(system.summary.macro)]);
  return table(['Genre', 'Queries', ...(extra ? ['Labelled'] : []), ...columns.map((m) => HEADINGS[m])], rows);
}

function rankingTable(rankings: Ranking[]): string {
  const genres = [...new Set(rankings.flatMap((r) => Object.keys(r.perGenre)))];
  const positives = (g: string) => rankings.find((r) => r.perGenre[g])?.perGenre[g]?.positives ?? 0;
  genres.sort((a, b) => positives(b) - positives(a) || a.localeCompare(b));
  const rows = genres.map((g) => [g, String(positives(g)), ...rankings.flatMap((r) => [fixed(r.perGenre[g]?.ap), fixed(r.perGenre[g]?.auc)])]);
  rows.push(['**mean**', '', ...rankings.flatMap((r) => [fixed(r.map), fixed(r.auc)])]);
  return table(['Genre', 'Labelled', ...rankings.flatMap((r) => [`AP (k=${r.k})`, `AUC (k=${r.k})`])], rows);
}

/** The evaluation as a Markdown report: headline table, per-genre tables, definitions, run details. */
export function toMarkdown(evaluation: Evaluation, createdAt: Date): string {
  const { queries, gallery } = evaluation;
  const model = evaluation.systems.find((s) => s.id === 'model')!;
  const lines: string[] = [];
  lines.push(`# Evaluation of ${evaluation.modelVersion}`, '');
  lines.push(
    `Queries: ${describeSource(queries.source, queries.count)}. Gallery: ${describeSource(gallery.source, gallery.count)}. ` +
      `Search: ${evaluation.search === 'exact' ? 'exact (the figures measure the model, not the index)' : 'the served usearch index'}. ` +
      'A query never matches itself.',
    '',
  );
  lines.push('## Headline (micro / macro)', '');
  lines.push(
    table(
      ['System', ...METRICS.map((m) => HEADINGS[m])],
      evaluation.systems.map((s) => [s.label, ...METRICS.map((m) => `${fixed(s.summary.micro[m])} / ${fixed(s.summary.macro[m])}`)]),
    ),
    '',
  );
  lines.push('## Genre ranking (multi-label): the vote\'s scores per genre', '');
  lines.push(
    table(
      ['System', ...RANKING_KS.flatMap((k) => [`mAP (k=${k})`, `AUC (k=${k})`]), 'similarity spread'],
      evaluation.systems.map((s) => [s.label, ...s.summary.ranking.flatMap((r) => [fixed(r.map), fixed(r.auc)]), fixed(s.similaritySpread)]),
    ),
    '',
  );
  for (const s of evaluation.systems) lines.push(`- ${s.label}: ${s.protocol}; gallery of ${count(s.gallery)}, ${count(s.summary.queries)} queries.`);
  lines.push('', "## Genres as a classifier (multi-label: every genre of a poster is its label)", '');
  lines.push(
    table(
      ['System', 'mAP', 'mean AUC', 'F1 micro', 'F1 macro', 'ECE'],
      evaluation.genreSystems.map((g) => [g.label, fixed(g.figures.map), fixed(g.figures.auc), fixed(g.figures.f1Micro), fixed(g.figures.f1Macro), fixed(g.figures.ece)]),
    ),
    '',
  );
  if (evaluation.diversity.length) {
    lines.push(`## Diverse answers: \`diversity\` on the model's ${VOTE_K} nearest`, '');
    lines.push(
      `Each query's ${VOTE_K} answers picked by maximal marginal relevance from its ${4 * VOTE_K} exact nearest, as the search endpoints pick them; ` +
        'how alike the answers are (the mean cosine similarity of each two), and the genre vote of those answers as a classifier.',
      '',
    );
    lines.push(
      table(
        ['diversity', 'mean pairwise similarity', 'vote mAP', 'vote mean AUC'],
        evaluation.diversity.map((d) => [d.diversity.toFixed(2), fixed(d.meanPairwiseSimilarity), fixed(d.vote.map), fixed(d.vote.auc)]),
      ),
      '',
    );
  }
  const withSeries = evaluation.systems.filter((s) => s.series);
  if (withSeries.length) {
    lines.push('## Same film series among the nearest', '');
    lines.push(
      table(
        ['System', 'Queries', 'series@1', 'series@8'],
        withSeries.map((s) => [s.label, String(s.series!.queries), fixed(s.series!.hits['@1']), fixed(s.series!.hits['@8'])]),
      ),
      '',
    );
    const d = evaluation.seriesVsHistogram;
    if (d) lines.push(`Model minus histogram at 8, the same queries: ${d.mean.toFixed(3)} (95% paired bootstrap interval ${d.low.toFixed(3)} to ${d.high.toFixed(3)}).`, '');
  }
  for (const note of evaluation.notes) lines.push(`- ${note}`);
  if (evaluation.indexRecallVsExact) {
    const recall = Object.entries(evaluation.indexRecallVsExact).map(([k, v]) => `${fixed(v)} ${k}`);
    lines.push(`- Served index recall vs exact search: ${recall.join(', ')}.`);
  }
  const missing = Object.entries(queries.genresMissingFromGallery)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([genre, n]) => `${genre} (${n})`);
  if (missing.length) lines.push(`- Query genres no gallery poster has (misses for every system): ${missing.join(', ')}.`);
  if (queries.inCatalog && queries.source.startsWith('csv:')) {
    lines.push(`- ${queries.inCatalog} queries are pictures already in the catalog; they never match themselves.`);
  }
  if (queries.skipped.length) {
    const skipped = queries.skipped.map((s) => `line ${s.line}${s.id ? ` (${s.id})` : ''}: ${s.reason}`);
    lines.push(`- ${queries.skipped.length} query rows skipped: ${skipped.join('; ')}.`);
  }
  lines.push('');
  lines.push(`## Per genre, retrieval: ${model.label}`, '');
  lines.push(perGenreTable(model, ['recall@1', 'recall@3', 'recall@8', 'map@r'], null), '');
  lines.push(`## Per genre, genre prediction: ${model.label}`, '');
  const prediction: MetricName[] = ['majority@1', 'majority@3', 'majority@5', 'majority@8', 'any_genre_hit@1', 'vote_accuracy', 'vote_f1'];
  lines.push(perGenreTable(model, prediction, 'labelled'), '');
  lines.push(`## Per genre, genre ranking: ${model.label}`, '');
  lines.push(rankingTable(model.summary.ranking), '');
  lines.push('"Queries" counts the queries of that single genre; "Labelled" those carrying the genre among their genres (its F1\'s support).', '');
  lines.push('## Definitions', '');
  for (const definition of DEFINITIONS) lines.push(`- ${definition}`);
  lines.push('', '## Run', '');
  const timings = Object.entries(evaluation.timingsMs).map(([step, ms]) => `${step} ${count(ms)}`);
  lines.push(`Created ${createdAt.toISOString()}. Timings (ms): ${timings.join(', ')}.`, '');
  return lines.join('\n');
}
