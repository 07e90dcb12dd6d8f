import { type Logger, pino } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/**
 * JSON lines on stdout, written synchronously so that the last lines before an exit are never
 * lost; `service` tells the proxy's lines from the uploaders'.
 */
export function createLogger(service: string, level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  const options = { level, base: { service }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * Logs at most once per `intervalMs`, reporting how many were suppressed in between, so that an
 * outage (Redis down, S3 refusing) produces a line every few seconds and not one per request.
 */
export function rateLimited(intervalMs: number, now: () => number = Date.now) {
  let last = -Infinity;
  let suppressed = 0;
  return (emit: (suppressed: number) => void): void => {
    const t = now();
    if (t - last < intervalMs) {
      suppressed += 1;
      return;
    }
    last = t;
    emit(suppressed);
    suppressed = 0;
  };
}
