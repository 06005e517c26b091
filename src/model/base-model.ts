import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { renderInputs, writeManifest } from '../catalog/manifest.js';
import { defaultSpec } from './preprocess.js';
import type { Catalog } from '../state/catalog.js';
import type { ModelRegistry, ModelVersion } from '../state/models.js';
import { ensurePython, runTraining } from './python.js';
import { refreshGenreHead, registerModelDir } from './registration.js';
import { fetchWeights, WeightsUnavailable, type VerifiedWeights } from './weights.js';

/**
 * The model to serve when none is active, the best this machine can have:
 * 1. MARQUEE_BASE_MODEL, a model directory made elsewhere, when given;
 * 2. the base model (ResNet50 + 512-d head) exported on ImageNet weights: torchvision's, fetched
 *    once into the data dir (or MARQUEE_BASE_WEIGHTS: a path or URL), hash-checked;
 * 3. without them (offline, opted out with MARQUEE_BASE_WEIGHTS=none, or refused), the default
 *    model shipped in the repository (models/default: trained by the CPU recipe on the demo
 *    catalog from a random start), which needs no Python;
 * 4. and when there is none, the random-initialisation base export.
 * The version record's `init_status` says which (e.g. "random (offline)"); `/ready` shows it.
 */
export async function ensureBaseModel(
  config: Config,
  catalog: Catalog,
  registry: ModelRegistry,
  log: Logger,
  onStatus: (status: string) => void,
): Promise<ModelVersion> {
  const active = await registry.active();
  if (active) {
    const shipped = active.version.startsWith('default-') ? config.defaultModelDir : active.version.startsWith('base-') ? config.baseModelDir : null;
    return (shipped && existsSync(join(shipped, 'model.onnx')) && (await refreshGenreHead(shipped, active, registry))) || active;
  }
  let model: ModelVersion;
  if (config.baseModelDir) {
    model = await registerModelDir(config.baseModelDir, 'base', config.dataDir, registry);
  } else {
    const weights = await imagenetWeights(config, log, onStatus);
    if ('path' in weights) {
      const dir = await exportBase(config, catalog, log, onStatus, weights);
      model = await registerModelDir(dir, 'base', config.dataDir, registry, { init_status: 'imagenet' });
    } else if (config.defaultModelDir && existsSync(join(config.defaultModelDir, 'model.onnx'))) {
      log.info({ dir: config.defaultModelDir }, 'serving the default model shipped with Marquee (trained on the demo catalog)');
      model = await registerModelDir(config.defaultModelDir, 'default', config.dataDir, registry, { init_status: `random (${weights.reason})` });
    } else {
      const dir = await exportBase(config, catalog, log, onStatus, null);
      model = await registerModelDir(dir, 'base', config.dataDir, registry, { init_status: `random (${weights.reason})` });
    }
  }
  await registry.activate(model.version, new Date().toISOString());
  log.info({ version: model.version }, 'model registered and activated');
  return model;
}

/** Verified ImageNet weights, or why there are none (one clear log line, never a retry loop). */
async function imagenetWeights(
  config: Config,
  log: Logger,
  onStatus: (status: string) => void,
): Promise<VerifiedWeights | { reason: string }> {
  if (!config.baseWeights) {
    log.info('ImageNet weights opted out (MARQUEE_BASE_WEIGHTS=none): starting from a random initialisation');
    return { reason: 'opted out' };
  }
  onStatus(`fetching ImageNet weights (${config.baseWeights})`);
  try {
    const weights = await fetchWeights({ ref: config.baseWeights, sha256: config.baseWeightsSha256 }, join(config.dataDir, 'weights'), {
      connectTimeoutMs: config.weightsConnectTimeoutMs,
      bakedDirs: config.weightsDir ? [config.weightsDir] : [],
    });
    log.info({ path: weights.path, sha256: weights.sha256 }, 'ImageNet weights verified');
    return weights;
  } catch (error) {
    if (!(error instanceof WeightsUnavailable)) throw error;
    const reason = error.reason === 'offline' ? 'offline' : `weights ${error.reason}`;
    const line = `no ImageNet weights (${reason}): ${error.message}; starting from a random initialisation`;
    if (error.reason === 'refused') log.error(line);
    else log.warn(line);
    return { reason };
  }
}

/** `python -m training export-base` into the data dir (skipped when that export already exists). */
async function exportBase(
  config: Config,
  catalog: Catalog,
  log: Logger,
  onStatus: (status: string) => void,
  weights: VerifiedWeights | null,
): Promise<string> {
  const { width, height } = config.baseInput;
  const dir = join(config.dataDir, 'exports', `base-${weights ? 'imagenet' : 'random'}-${width}x${height}`);
  if (existsSync(join(dir, 'model.onnx'))) return dir;
  onStatus('preparing the Python environment');
  const python = await ensurePython(config.python, log, { onProgress: (p) => onStatus(`preparing the Python environment: ${p.step}${p.total ? ` (${p.done}/${p.total})` : ''}`) });
  const manifest = join(config.dataDir, 'manifests', 'base.jsonl');
  const spec = defaultSpec(width, height);
  const posters = await catalog.all();
  onStatus('rendering model inputs for calibration');
  const paths = await renderInputs(posters, spec, config.dataDir, config.maxPixels);
  writeManifest(manifest, posters, config.dataDir, { spec, paths });
  const args = ['export-base', '--manifest', manifest, '--out', dir, '--width', String(width), '--height', String(height)];
  if (weights) args.push('--weights', weights.path, '--weights-sha256', weights.sha256);
  log.info({ width, height, weights: weights?.path ?? 'random init + BatchNorm calibration' }, 'exporting the base model');
  onStatus('exporting the base model');
  await runTraining(python, args, (event) => {
    if (event.event === 'calibrate') onStatus(`calibrating the base model: ${event.done}/${event.total}`);
    log.debug(event, 'export-base');
  });
  return dir;
}
