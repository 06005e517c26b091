// A decode thread of DecodePool: decodes an image, hashes and resizes its pixels, and collects
// the full-size picture as soon as the job is done, so that its memory goes with the job.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { ImageError } from '../errors.js';
import type { DecodeOutput, FromDecodeWorker, ToDecodeWorker } from './decode-pool.js';
import { identify, preprocess, renderModelInput } from './preprocess.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as (options: { type: 'minor' | 'major' }) => void;
const port = parentPort!;

async function run({ job }: ToDecodeWorker): Promise<{ output: DecodeOutput; transfer: ArrayBuffer[] }> {
  const input = Buffer.from(job.input.buffer, job.input.byteOffset, job.input.byteLength);
  if (job.kind === 'identify') return { output: await identify(input, job.maxPixels), transfer: [] };
  if (job.kind === 'render') {
    const png = await renderModelInput(input, job.spec, job.maxPixels);
    const copy = new Uint8Array(png); // a buffer of its own, to hand over
    return { output: copy, transfer: [copy.buffer] };
  }
  const { tensor, image } = await preprocess(input, job.spec, job.maxPixels);
  return { output: { tensor, image }, transfer: [tensor.buffer as ArrayBuffer] };
}

port.on('message', (message: ToDecodeWorker) => {
  void run(message)
    .then(
      ({ output, transfer }) => port.postMessage({ id: message.id, output } satisfies FromDecodeWorker, transfer),
      (error: Error) => {
        const image = error instanceof ImageError ? { status: error.statusCode as 400 | 413 | 415 | 422, code: error.code } : undefined;
        port.postMessage({ id: message.id, error: { message: error.message, image } } satisfies FromDecodeWorker);
      },
    )
    // The picture was this job's: young, unreachable now, and collected by a scavenge (measured: 0.4 ms).
    .finally(() => collectGarbage({ type: 'minor' }));
});
