import ort from 'onnxruntime-node';
import type { Device } from '../config.js';
import type { Logger } from '../log.js';

export interface EmbedderOptions {
  modelPath: string;
  inputName: string;
  outputName: string;
  width: number;
  height: number;
  dims: number;
  device: Device;
  threads: number;
}

/** One onnxruntime session: a batch of CHW tensors in, one embedding per image out. */
export class Embedder {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly options: EmbedderOptions,
    readonly provider: 'cuda' | 'cpu',
  ) {}

  static async load(options: EmbedderOptions, log: Logger): Promise<Embedder> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    };
    if (options.device !== 'cpu') {
      try {
        const session = await ort.InferenceSession.create(options.modelPath, { ...base, executionProviders: ['cuda', 'cpu'] });
        log.info({ provider: 'cuda' }, 'embedding on CUDA');
        return new Embedder(session, options, 'cuda');
      } catch (error) {
        if (options.device === 'cuda') {
          throw new Error(`MARQUEE_DEVICE=cuda but the CUDA execution provider is unavailable: ${(error as Error).message}`);
        }
        log.info({ provider: 'cpu', reason: firstLine((error as Error).message) }, 'CUDA execution provider unavailable, embedding on CPU');
      }
    }
    const session = await ort.InferenceSession.create(options.modelPath, { ...base, executionProviders: ['cpu'] });
    if (options.device === 'cpu') log.info({ provider: 'cpu' }, 'embedding on CPU (MARQUEE_DEVICE=cpu)');
    return new Embedder(session, options, 'cpu');
  }

  get inputSize(): number {
    return 3 * this.options.width * this.options.height;
  }

  async embed(tensors: Float32Array[]): Promise<Float32Array[]> {
    const n = tensors.length;
    const batch = new Float32Array(n * this.inputSize);
    tensors.forEach((tensor, i) => batch.set(tensor, i * this.inputSize));
    const input = new ort.Tensor('float32', batch, [n, 3, this.options.height, this.options.width]);
    const outputs = await this.session.run({ [this.options.inputName]: input });
    const output = outputs[this.options.outputName];
    if (!output) throw new Error(`model has no output named "${this.options.outputName}"`);
    const data = output.data as Float32Array;
    const dims = this.options.dims;
    const result = Array.from({ length: n }, (_, i) => data.slice(i * dims, (i + 1) * dims));
    input.dispose();
    output.dispose();
    return result;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? text;
}
