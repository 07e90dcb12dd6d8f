import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// Every socket read of undici and ioredis allocates a buffer that V8 counts as external memory,
// and past a fixed amount of it V8 starts a full marking of the heap: several times a second at
// the rates users run, the largest single cost per image (bench/PROFILE.md). Counted against the
// heap's own growing limit instead, it is collected as the heap needs, which under heavy load lets
// it grow far: past `limitBytes` a collection is started here. Bytes a service means to hold (the
// proxy's memory tier) do not count towards it: collecting could not free them.

const held = new Set<() => number>();

/** Bytes the service holds on purpose, read at each check; call the result to stop counting them. */
export function countAsHeld(bytes: () => number): () => void {
  held.add(bytes);
  return () => held.delete(bytes);
}

/** Whether `external` bytes are past the bound, beyond those held on purpose. */
export function pastBound(external: number, limitBytes: number): boolean {
  let total = limitBytes;
  for (const bytes of held) total += bytes();
  return external > total;
}

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
    if (pastBound(getHeapStatistics().external_memory, limitBytes)) gc({ type: 'major', execution: 'async' });
  }, intervalMs).unref();
}
