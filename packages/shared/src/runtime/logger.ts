import { type Logger, pino } from 'pino';
import type { LogLevel } from '../config/index.js';

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

/**
 * rateLimited() for each distinct cause (an S3 error code, a message): one line per cause per
 * `intervalMs`, with the count of those suppressed since. Causes not seen for an interval are
 * forgotten, so that the map stays as small as the causes of the moment.
 */
export function rateLimitedBy(intervalMs: number, now: () => number = Date.now) {
  const gates = new Map<string, { gate: ReturnType<typeof rateLimited>; seen: number }>();
  return (cause: string, emit: (suppressed: number) => void): void => {
    const t = now();
    if (gates.size > 64) for (const [key, g] of gates) if (t - g.seen >= intervalMs) gates.delete(key);
    let entry = gates.get(cause);
    if (!entry) {
      entry = { gate: rateLimited(intervalMs, now), seen: t };
      gates.set(cause, entry);
    }
    entry.seen = t;
    entry.gate(emit);
  };
}
