import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker thread on a module beside the caller: `new URL('./x-worker.js', import.meta.url)`
 * names the compiled file, and under tsx (tests, benchmarks) the caller is the .ts source, whose
 * worker starts through tsx-worker.mjs, which registers tsx's loader first.
 */
export function startWorker(callerUrl: string, name: string, options: Omit<WorkerOptions, 'eval'> = {}): Worker {
  const fromSource = callerUrl.endsWith('.ts');
  const url = new URL(`./${name}.${fromSource ? 'ts' : 'js'}`, callerUrl);
  if (!fromSource) return new Worker(url, options);
  return new Worker(new URL('./tsx-worker.mjs', import.meta.url), { ...options, argv: [...(options.argv ?? []), url.href] });
}
