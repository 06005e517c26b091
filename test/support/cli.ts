import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { withDatabase } from './backend.js';
import { ROOT } from './paths.js';

/** Runs the real `marquee` command and waits for it. */
export function marquee(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [join(ROOT, 'bin', 'marquee.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', MARQUEE_THREADS: '2', MARQUEE_PRECISION: 'fp32', ...withDatabase(env) },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The same, without blocking this process (for commands run beside a server the test keeps querying). */
export function marqueeAsync(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'marquee.js'), ...args], {
      cwd: ROOT,
      env: { ...process.env, LOG_LEVEL: 'warn', MARQUEE_THREADS: '2', MARQUEE_PRECISION: 'fp32', ...withDatabase(env) },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
