import type { DecodeBudget, DecodeWait } from './decode-budget.js';
import type { DecodeJob, DecodePool } from './decode-pool.js';
import { decodeCost, readHeader, type Picture, type PreprocessingSpec } from './preprocess.js';

/**
 * The server's way to decode images: each decode is admitted by the decode budget on the cost its
 * header gives (read before any pixel is decoded), then runs on a decode thread. Uploads, the
 * catalog import, embedding the catalog and rendering training inputs all go through one of these,
 * so that together they never take more than the budget. Errors are preprocess.ts's.
 */
export class Decodes {
  constructor(
    private readonly maxPixels: number,
    readonly budget: DecodeBudget,
    private readonly pool: DecodePool,
  ) {}

  /** preprocess(): the model input and the picture's identity. */
  async preprocess(input: Buffer, spec: PreprocessingSpec, wait: DecodeWait): Promise<{ tensor: Float32Array; image: Picture }> {
    return (await this.admitted(input, wait, { kind: 'preprocess', input, spec, maxPixels: this.maxPixels })) as { tensor: Float32Array; image: Picture };
  }

  /** identify(): the picture's size, format and pixel hash. */
  async identify(input: Buffer, wait: DecodeWait): Promise<Picture> {
    return (await this.admitted(input, wait, { kind: 'identify', input, maxPixels: this.maxPixels })) as Picture;
  }

  /** renderModelInput(): the model input as a PNG. */
  async render(input: Buffer, spec: PreprocessingSpec, wait: DecodeWait): Promise<Buffer> {
    const png = (await this.admitted(input, wait, { kind: 'render', input, spec, maxPixels: this.maxPixels })) as Uint8Array;
    return Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  }

  /** Starts the decode threads (a server's start; commands start them when they first decode). */
  start(): void {
    this.pool.start();
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private async admitted(input: Buffer, wait: DecodeWait, job: DecodeJob) {
    const header = await readHeader(input, this.maxPixels);
    return this.budget.run(decodeCost(header), wait, () => this.pool.run(job));
  }
}
