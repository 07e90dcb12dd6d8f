import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

// Uploads are background work: on a host shared with the proxy and imgproxy, the uploader should
// only use CPU that serving leaves idle (bench/PROFILE.md measured what it costs otherwise).
// Linux keeps a niceness per thread, so every thread of the process is lowered; threads started
// later inherit the value of the thread that starts them.

export interface PriorityResult {
  /** the niceness the threads now have */
  nice: number;
  /** threads that could not be lowered, with the reason */
  failed: string[];
}

/** Raises the niceness of every thread of this process to at least `nice` (never lowers it). */
export function lowerPriority(nice: number): PriorityResult {
  const failed: string[] = [];
  let threads: number[];
  try {
    threads = readdirSync('/proc/self/task').map(Number);
  } catch {
    threads = [0]; // no /proc: the whole process, where the system applies it so
  }
  for (const tid of threads) {
    try {
      if (getPriority(tid) < nice) setPriority(tid, nice);
    } catch (error) {
      // a thread that ended since the listing needs nothing
      if ((error as { info?: { code?: string } }).info?.code !== 'ESRCH') failed.push(`${tid}: ${(error as Error).message}`);
    }
  }
  return { nice, failed };
}
