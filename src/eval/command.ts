import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../log.js';
import { Metrics } from '../metrics.js';
import { createServices } from '../service/startup.js';
import { evaluate, type GalleryChoice } from './evaluate.js';
import { stableStringify, toJsonDocument, toMarkdown } from './report.js';
import { parseCommandOptions } from '../command-options.js';

export const EVAL_USAGE =
  'usage: marquee eval [--version V] [--gallery train|train+val|all] [--index] [--protocol paper]\n' +
  '                    [--queries movies.csv [--images dir]] [--json path] [--out report.md]';

const EVAL_HELP = `${EVAL_USAGE}

Evaluates a model version (default: the active one): queries = the test split, gallery = train, exact
search, a query never matching itself; the always-majority-genre, HSV colour-histogram and untrained
base-model baselines in the same table. Needs the catalog imported (marquee serve, import or index);
embeds posters the version has no embedding for yet.

  --version V           model version to evaluate
  --gallery G           train (default), train+val, or all (the default with --queries)
  --index               search the served usearch index instead, and report its recall vs exact search
  --protocol paper      also run the paper's protocol (all posters, themselves included, any shared genre)
  --queries CSV         an external query set in the catalog's movies.csv format
  --images DIR          where the CSV's file column is relative to (default: the CSV's directory)
  --json PATH           write the JSON document (sorted keys, rounded figures) to PATH
  --out PATH            write the Markdown report to PATH instead of stdout`;

const GALLERIES: GalleryChoice[] = ['train', 'train+val', 'all'];

/** `marquee eval`: evaluates a model version and writes the Markdown report (stdout without --out) and the JSON document. */
export async function evalCommand(config: Config, log: Logger, args: string[]): Promise<void> {
  const values = parseCommandOptions(
    args,
    {
      version: { type: 'string' },
      gallery: { type: 'string' },
      index: { type: 'boolean' },
      protocol: { type: 'string' },
      queries: { type: 'string' },
      images: { type: 'string' },
      json: { type: 'string' },
      out: { type: 'string' },
    },
    EVAL_USAGE,
    EVAL_HELP,
  );
  if (!values) return;
  if (values.gallery !== undefined && !GALLERIES.includes(values.gallery as GalleryChoice)) {
    throw new ConfigError(`--gallery must be ${GALLERIES.join(', ')}, got "${values.gallery}"\n${EVAL_USAGE}`);
  }
  if (values.protocol !== undefined && values.protocol !== 'paper') throw new ConfigError(`--protocol can only be "paper"\n${EVAL_USAGE}`);
  if (values.images !== undefined && values.queries === undefined) throw new ConfigError(`--images needs --queries\n${EVAL_USAGE}`);

  const svc = await createServices(config, log, new Metrics());
  try {
    const catalogState = await svc.catalog.fingerprint(); // the catalog the evaluation reads
    const evaluation = await evaluate(svc, {
      version: values.version,
      gallery: values.gallery as GalleryChoice | undefined,
      index: values.index ?? false,
      paperProtocol: values.protocol === 'paper',
      queriesCsv: values.queries ? resolve(values.queries) : undefined,
      imagesDir: values.images ? resolve(values.images) : undefined,
    });
    const createdAt = new Date();
    const markdown = toMarkdown(evaluation, createdAt);
    const document = stableStringify(toJsonDocument(evaluation, createdAt));
    await svc.evaluations.put(evaluation.modelVersion, createdAt.toISOString(), document, markdown, catalogState);
    if (values.json) write(values.json, document);
    if (values.out) write(values.out, markdown);
    else process.stdout.write(markdown);
  } finally {
    await svc.state.close();
  }
}

function write(file: string, text: string): void {
  mkdirSync(dirname(resolve(file)), { recursive: true });
  writeFileSync(file, text);
}
