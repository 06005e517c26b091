// The onnxruntime session of one Embedder, on its own thread: session.run blocks the thread it
// runs on for the whole forward pass, and the server's event loop must keep serving meanwhile.
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { EmbedderOptions, FromWorker, ToWorker } from './embedder.js';

const options = workerData as EmbedderOptions;
const port = parentPort!;

function sessionOptions(spinning: boolean): ort.InferenceSession.SessionOptions {
  const spin = spinning ? '1' : '0';
  return {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // Threads spin between the graph's parallel sections but stop when a run returns: spinning on
    // after it takes the CPU that answers the request and decodes the next upload (p99 at c=1 21 → 16 ms).
    extra: { session: { force_spinning_stop: '1', intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
  };
}

async function createSession(): Promise<{ session: ort.InferenceSession; provider: 'cuda' | 'cpu'; fallback?: string }> {
  const base = sessionOptions(options.spinning);
  if (options.device !== 'cpu') {
    // The probe's failure is reported in our own log line; onnxruntime's error print would only alarm.
    const level = ort.env.logLevel;
    if (options.device === 'auto') ort.env.logLevel = 'fatal';
    try {
      return { session: await ort.InferenceSession.create(options.modelPath, { ...base, executionProviders: ['cuda', 'cpu'] }), provider: 'cuda' };
    } catch (error) {
      const reason = ((error as Error).message.split('\n', 1)[0] ?? '').trim();
      if (options.device === 'cuda') throw new Error(`MARQUEE_DEVICE=cuda but the CUDA execution provider is unavailable: ${reason}`);
      return { session: await ort.InferenceSession.create(options.modelPath, { ...base, executionProviders: ['cpu'] }), provider: 'cpu', fallback: reason };
    } finally {
      ort.env.logLevel = level;
    }
  }
  return { session: await ort.InferenceSession.create(options.modelPath, { ...base, executionProviders: ['cpu'] }), provider: 'cpu' };
}

const send = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

try {
  const { session, provider, fallback } = await createSession();
  // Spinning threads answer a lone request sooner (no wake-up between the graph's many parallel
  // sections), but while others wait they take the CPU that decodes the next uploads: on 2 cores
  // that costs a tenth of the throughput. So batches run with work waiting go to a second session
  // of the same model whose threads sleep (on the CPU; CUDA's kernels do not spin).
  const still = options.spinning && provider === 'cpu'
    ? await ort.InferenceSession.create(options.modelPath, { ...sessionOptions(false), executionProviders: ['cpu'] })
    : session; // prettier-ignore
  send({ type: 'ready', provider, fallback });
  port.on('message', async (message: ToWorker) => {
    if (message.type === 'release') {
      await session.release();
      if (still !== session) await still.release();
      send({ type: 'released' });
      return;
    }
    try {
      const input = new ort.Tensor('float32', message.batch, [message.n, 3, options.height, options.width]);
      const outputs = await (message.busy ? still : session).run({ [options.inputName]: input });
      const output = outputs[options.outputName];
      if (!output) throw new Error(`model has no output named "${options.outputName}"`);
      const data = (output.data as Float32Array).slice();
      input.dispose();
      output.dispose();
      send({ type: 'result', id: message.id, output: data }, [data.buffer]);
    } catch (error) {
      send({ type: 'error', id: message.id, message: (error as Error).message });
    }
  });
} catch (error) {
  send({ type: 'failed', message: (error as Error).message });
}
