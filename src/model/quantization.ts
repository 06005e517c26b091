import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { renderInputs, writeManifest } from '../catalog/manifest.js';
import type { Catalog, Poster } from '../state/catalog.js';
import { unfaithful, type ModelRegistry, type ModelVersion } from '../state/models.js';
import type { Decodes } from './decodes.js';
import { ensurePython, runTraining } from './python.js';
import { registerInt8Dir } from './registration.js';

/** Posters of each split the quantisation reads: calibration from train, the parity check on val. */
const CALIBRATE = 256;
const CHECK = 256;

export interface QuantizeDeps {
  config: Config;
  catalog: Catalog;
  models: ModelRegistry;
  log: Logger;
  /** The server's decodes (admitted by the decode budget it shares with uploads); none in the CLI. */
  decodes?: Decodes;
}

/** Every n-th poster of a split, up to `count`: a spread sample, the same at every run. */
function spread(posters: Poster[], count: number): Poster[] {
  if (posters.length <= count) return posters;
  const step = posters.length / count;
  return Array.from({ length: count }, (_, i) => posters[Math.floor(i * step)]!);
}

/**
 * Gives a version its int8 variant: `python -m training quantize` on its float32 file (static QDQ,
 * per-channel int8 weights), calibrated on catalog posters rendered by the server's own
 * preprocessing and checked against float32 on val posters, then recorded by registerInt8Dir.
 * Returns the int8 variant.
 */
export async function addInt8Variant(model: ModelVersion, deps: QuantizeDeps, onStatus: (status: string) => void = () => {}, signal?: AbortSignal): Promise<ModelVersion> {
  const { config, catalog, models, log } = deps;
  const existing = await models.get(model.version, 'int8');
  if (existing) return existing;
  const fp32 = await models.get(model.version, 'fp32');
  if (!fp32) throw new Error(`model ${model.version} has no float32 file to quantise`);
  const work = join(config.dataDir, 'jobs', `quantize-${model.version}`);
  rmSync(work, { recursive: true, force: true });
  try {
    const source = join(work, 'fp32');
    mkdirSync(source, { recursive: true });
    symlinkSync(join(config.dataDir, fp32.filePath), join(source, 'model.onnx'));
    writeFileSync(join(source, 'model.json'), JSON.stringify(fp32.source));
    const posters = await catalog.all();
    const sample = [
      ...spread(posters.filter((p) => p.split !== 'val' && p.split !== 'test'), CALIBRATE),
      ...spread(posters.filter((p) => p.split === 'val'), CHECK),
    ];
    if (sample.length === 0) throw new Error('no catalog posters to calibrate the int8 model on');
    onStatus('rendering posters to calibrate the int8 model');
    const paths = await renderInputs(sample, fp32.preprocessing, config.dataDir, config.maxPixels, undefined, deps.decodes);
    const manifest = join(work, 'manifest.jsonl');
    writeManifest(manifest, sample, config.dataDir, { spec: fp32.preprocessing, paths });
    const out = join(work, 'int8');
    log.info({ version: model.version, calibrate: Math.min(CALIBRATE, sample.length) }, 'quantising the model to int8');
    onStatus('quantising the model to int8');
    await runTraining(
      await ensurePython(config.python, log, { signal }),
      ['quantize', '--model', source, '--manifest', manifest, '--out', out, '--calibrate', String(CALIBRATE), '--check', String(CHECK)],
      (event) => {
        if (event.event === 'calibrate') onStatus(`quantising the model to int8: calibrated on ${event.done}/${event.total}`);
      },
      signal,
    );
    await registerInt8Dir(out, model.version, config.dataDir, models);
    log.info({ version: model.version, ...(await models.variantDetails(model.version, 'int8')) }, 'int8 variant ready');
    return (await models.get(model.version, 'int8'))!;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The variant a version should be served in, as the registry's policy hands it out, after making
 * its int8 variant when int8 is preferred and it has none. Float32 when the variant cannot be made
 * (no Python here, say) or, where int8 was chosen automatically, is not faithful to float32.
 */
export async function servedVariant(model: ModelVersion, deps: QuantizeDeps, onStatus?: (status: string) => void, signal?: AbortSignal): Promise<ModelVersion> {
  const { models, log } = deps;
  if (models.preferred !== 'int8' || model.variants.includes('int8')) return (await models.get(model.version)) ?? model;
  try {
    await addInt8Variant(model, deps, onStatus, signal);
  } catch (error) {
    signal?.throwIfAborted();
    log.warn({ version: model.version, err: error }, 'no int8 variant could be made: serving float32');
    return model;
  }
  const served = (await models.get(model.version))!;
  if (served.precision !== 'int8') {
    const why = unfaithful(await models.variantDetails(model.version, 'int8'));
    log.warn({ version: model.version }, `serving float32: the int8 variant is not faithful enough to serve automatically (${why}); MARQUEE_PRECISION=int8 serves it anyway`);
  }
  return served;
}
