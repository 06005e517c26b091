import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import { childEnvironment } from './child-env.js';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the creation of the Python environment stands: a step, and packages collected of those to install. */
export interface EnvironmentProgress {
  step: string;
  done?: number;
  total?: number;
}

/** One creation at a time per venv: a retrain and a quantisation asking together share it. */
const creating = new Map<string, Promise<string>>();

/**
 * The Python interpreter that runs the training package: MARQUEE_PYTHON when set, else the
 * project's venv, created (or brought up to date with training/requirements.lock) on demand by
 * scripts/python-env.sh in a child process: the first creation installs about 5 GB for minutes,
 * during which the server keeps answering and a job reports the script's steps as its progress.
 */
export function ensurePython(
  configured: string | null,
  log: Logger,
  options: { onProgress?: (progress: EnvironmentProgress) => void; signal?: AbortSignal } = {},
): Promise<string> {
  if (configured) return Promise.resolve(configured);
  const venv = process.env.MARQUEE_VENV ?? join(PROJECT_ROOT, '.venv');
  let pending = creating.get(venv);
  if (!pending) {
    pending = runEnvironmentScript(venv, log, options).finally(() => creating.delete(venv));
    creating.set(venv, pending);
  }
  return pending;
}

function runEnvironmentScript(venv: string, log: Logger, { onProgress, signal }: { onProgress?: (progress: EnvironmentProgress) => void; signal?: AbortSignal }): Promise<string> {
  const venvPython = join(venv, 'bin', 'python');
  if (!existsSync(venvPython)) log.info({ venv }, 'creating the Python environment for the training package (first run only; a few minutes)');
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(PROJECT_ROOT, 'scripts', 'python-env.sh')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnvironment({ MARQUEE_VENV: venv, PYTHON_ENV_PROGRESS: '1' }),
      signal,
      killSignal: 'SIGTERM',
    });
    let step = 'checking';
    let done = 0;
    let total: number | undefined;
    let errors = '';
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const announced = /^python-env: (.*)$/.exec(line);
      if (announced) {
        step = announced[1]!;
        const count = /^installing (\d+) packages$/.exec(step);
        if (count) total = Number(count[1]);
      } else if (/^Collecting /.test(line)) {
        done += 1;
      } else if (/^Installing collected packages/.test(line)) {
        step = 'installing the collected packages';
      } else {
        return;
      }
      onProgress?.({ step, done, total });
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      errors = (errors + chunk).slice(-4000);
      log.warn(chunk.trim());
    });
    child.on('error', reject);
    child.on('close', (code, sig) => {
      if (code === 0) resolve(venvPython);
      else reject(new Error(`scripts/python-env.sh failed (${sig ?? `exit ${code}`}): ${errors.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

export type TrainingEvent = { event: string } & Record<string, unknown>;

/**
 * Runs `python -m training <args>` from the project root. Each JSON line on stdout is an event;
 * stderr is the human log, kept as a tail for error messages.
 */
export function runTraining(
  python: string,
  args: string[],
  onEvent: (event: TrainingEvent) => void,
  signal?: AbortSignal,
  onLog?: (text: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ['-m', 'training', ...args], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // The child arms a parent-death signal (training/lifetime.py): a killed server leaves no training behind.
      env: childEnvironment({ PYTHONUNBUFFERED: '1', MARQUEE_PARENT_PID: String(process.pid) }),
      signal,
      killSignal: 'SIGTERM',
    });
    let buffered = '';
    let stderrTail = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          onEvent(JSON.parse(line) as TrainingEvent);
        } catch {
          onEvent({ event: 'output', line });
        }
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-4000);
      onLog?.(chunk);
    });
    child.on('error', reject);
    child.on('close', (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`python -m training ${args[0]} failed (${sig ?? `exit ${code}`}): ${stderrTail.trim().split('\n').slice(-5).join(' | ')}`));
    });
  });
}
