import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PreprocessingSpec } from './preprocess.js';
import { copyAtomically } from '../state/files.js';
import type { ModelRegistry, ModelVersion } from '../state/models.js';

/** model.json, written by the training package beside model.onnx. */
interface ModelSidecar {
  format: string;
  embedding_dim: number;
  input: { name: string; width: number; height: number };
  output: { name: string };
  preprocessing: PreprocessingSpec;
  precision?: 'int8';
  [key: string]: unknown;
}

/**
 * Registers a directory made by the training package (model.onnx + model.json): the ONNX file is
 * copied under the data dir as models/<version>.onnx, its version named after its checksum.
 */
export async function registerModelDir(
  dir: string,
  kind: string,
  dataDir: string,
  registry: ModelRegistry,
  /** Facts about how it came to be served, stored in the version's `source` beside model.json. */
  notes: Record<string, unknown> = {},
): Promise<ModelVersion> {
  const sidecar = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as ModelSidecar;
  if (sidecar.format !== 'marquee-model/1') throw new Error(`${dir}/model.json has format "${sidecar.format}", expected marquee-model/1`);
  const sha = fileSha256(join(dir, 'model.onnx'));
  const version = `${kind}-${sha.slice(0, 12)}`;
  const existing = await registry.get(version);
  if (existing) return withCurrentGenreHead(existing, sidecar, registry);
  const modelsDir = join(dataDir, 'models');
  mkdirSync(modelsDir, { recursive: true });
  copyAtomically(join(dir, 'model.onnx'), join(modelsDir, `${version}.onnx`));
  const hasCheckpoint = existsSync(join(dir, 'model.pt'));
  if (hasCheckpoint) copyAtomically(join(dir, 'model.pt'), join(modelsDir, `${version}.pt`));
  return registry.register({
    version,
    precision: sidecar.precision === 'int8' ? 'int8' : 'fp32',
    filePath: `models/${version}.onnx`,
    fileSha256: sha,
    dims: sidecar.embedding_dim,
    inputWidth: sidecar.input.width,
    inputHeight: sidecar.input.height,
    inputName: sidecar.input.name,
    outputName: sidecar.output.name,
    preprocessing: sidecar.preprocessing,
    source: { ...sidecar, ...notes },
    metrics: null,
    checkpointPath: hasCheckpoint ? `models/${version}.pt` : null,
    createdAt: new Date().toISOString(),
  });
}

/**
 * The registered version of a model directory, with the genre head its model.json has now: a head
 * fitted (`python -m training fit-head`) after the version was registered, e.g. the shipped default
 * model's, reaches a data dir that already serves it. Null when the directory holds another network.
 */
export async function refreshGenreHead(dir: string, model: ModelVersion, registry: ModelRegistry): Promise<ModelVersion | null> {
  const float32 = await registry.get(model.version, 'fp32');
  if (!float32 || !existsSync(join(dir, 'model.json')) || fileSha256(join(dir, 'model.onnx')) !== float32.fileSha256) return null;
  return withCurrentGenreHead(model, JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as ModelSidecar, registry);
}

async function withCurrentGenreHead(model: ModelVersion, sidecar: ModelSidecar, registry: ModelRegistry): Promise<ModelVersion> {
  if (!sidecar.genre_head || JSON.stringify(model.source.genre_head) === JSON.stringify(sidecar.genre_head)) return model;
  await registry.setGenreHead(model.version, sidecar.genre_head);
  return (await registry.get(model.version, model.precision))!;
}

/**
 * Records the int8 copy that `python -m training quantize` wrote to `dir` (model.onnx + model.json)
 * as the version's int8 variant: the file copied under the data dir as models/<version>.int8.onnx,
 * its checksum, and the quantisation settings and parity figures from model.json.
 */
export async function registerInt8Dir(dir: string, version: string, dataDir: string, registry: ModelRegistry): Promise<void> {
  const meta = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as { quantization?: Record<string, unknown> };
  const filePath = `models/${version}.int8.onnx`;
  const sha = fileSha256(join(dir, 'model.onnx'));
  copyAtomically(join(dir, 'model.onnx'), join(dataDir, filePath));
  await registry.addVariant(version, 'int8', filePath, sha, { quantization: meta.quantization ?? null }, new Date().toISOString());
}

function fileSha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
