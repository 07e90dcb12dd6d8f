import { expect } from 'vitest';

/**
 * Rate-limited log lines come at least `intervalMs` apart, by their own time stamps (the limiter
 * reads the clock a moment before the logger stamps the line: a few ms of leeway).
 */
export function expectSpacedBy(lines: readonly Record<string, unknown>[], intervalMs: number): void {
  const times = lines.map((l) => Date.parse(String(l.time)));
  for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(intervalMs - 50);
}
