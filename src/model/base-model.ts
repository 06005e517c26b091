import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { renderInputs, writeManifest } from '../catalog/manifest.js';
import { defaultSpec } from './preprocess.js';
import type { Catalog } from '../state/catalog.js';
import type { ModelRegistry, ModelVersion } from '../state/models.js';
import { ensurePython, runTraining } from './python.js';
import { registerModelDir } from './registration.js';

/**
 * The model to serve when none is active: MARQUEE_BASE_MODEL if given, else the training
 * package's base export (ResNet50 + 512-d head; ImageNet weights when configured, otherwise a
 * seeded random initialisation with BatchNorm statistics calibrated on the catalog's posters).
 */
export async function ensureBaseModel(
  config: Config,
  catalog: Catalog,
  registry: ModelRegistry,
  log: Logger,
  onStatus: (status: string) => void,
): Promise<ModelVersion> {
  const active = registry.active();
  if (active) return active;
  let dir = config.baseModelDir;
  if (!dir) {
    const { width, height } = config.baseInput;
    dir = join(config.dataDir, 'exports', `base-${width}x${height}`);
    if (!existsSync(join(dir, 'model.onnx'))) {
      onStatus('preparing the Python environment');
      const python = ensurePython(config.python, log);
      const manifest = join(config.dataDir, 'manifests', 'base.jsonl');
      const spec = defaultSpec(width, height);
      const posters = catalog.all();
      onStatus('rendering model inputs for calibration');
      const paths = await renderInputs(posters, spec, config.dataDir, config.maxPixels);
      writeManifest(manifest, posters, config.dataDir, { spec, paths });
      const args = ['export-base', '--manifest', manifest, '--out', dir, '--width', String(width), '--height', String(height)];
      if (config.baseWeights) args.push('--weights', config.baseWeights, '--weights-sha256', config.baseWeightsSha256 ?? '');
      log.info({ width, height, weights: config.baseWeights ?? 'random init + BatchNorm calibration' }, 'exporting the base model');
      onStatus('exporting the base model');
      await runTraining(python, args, (event) => {
        if (event.event === 'calibrate') onStatus(`calibrating the base model: ${event.done}/${event.total}`);
        log.debug(event, 'export-base');
      });
    }
  }
  const model = registerModelDir(dir, 'base', config.dataDir, registry);
  registry.activate(model.version, new Date().toISOString());
  log.info({ version: model.version }, 'base model registered and activated');
  return model;
}
