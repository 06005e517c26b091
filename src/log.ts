import { destination, pino, type Logger } from 'pino';

export type { Logger };

/**
 * Lines are written synchronously: the last ones before a crash, a fatal exit or a long
 * synchronous step (an index build) are out when they happen, not lost in a buffer.
 */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'marquee' } }, destination({ dest: 1, sync: true }));
}
