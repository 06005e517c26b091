import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The Python interpreter that runs the training package: MARQUEE_PYTHON when set, else the
 * project's venv, created (or brought up to date with training/requirements.lock) on demand.
 */
export function ensurePython(configured: string | null, log: Logger): string {
  if (configured) return configured;
  const venvPython = join(process.env.MARQUEE_VENV ?? join(PROJECT_ROOT, '.venv'), 'bin', 'python');
  if (!existsSync(venvPython)) log.info('creating the Python environment for the training package (first run only; a few minutes)');
  const result = spawnSync('bash', [join(PROJECT_ROOT, 'scripts', 'python-env.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`scripts/python-env.sh failed (exit ${result.status})`);
  return venvPython;
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
      env: { ...process.env, PYTHONUNBUFFERED: '1', MARQUEE_PARENT_PID: String(process.pid) },
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
