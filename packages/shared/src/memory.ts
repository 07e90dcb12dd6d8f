import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// Every socket read of undici and ioredis allocates a buffer that V8 counts as external memory,
// and past a fixed amount of it V8 starts a full marking of the heap: several times a second at
// the rates users run, the largest single cost per image (bench/PROFILE.md). Counted against the
// heap's own growing limit instead, it is collected as the heap needs, which under heavy load lets
// it grow far: past `limitBytes` a collection is started here.

export function tuneGarbageCollection(limitBytes = 64 * 2 ** 20, intervalMs = 1000): void {
  setFlagsFromString('--external-memory-accounted-in-global-limit');
  setFlagsFromString('--expose-gc');
  let gc: (options: { type: 'major'; execution: 'async' }) => void;
  try {
    gc = runInNewContext('gc');
  } catch {
    return; // a runtime without it: V8's own limit still applies
  }
  setInterval(() => {
    if (getHeapStatistics().external_memory > limitBytes) gc({ type: 'major', execution: 'async' });
  }, intervalMs).unref();
}
