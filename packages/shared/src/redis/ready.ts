import { once } from 'node:events';
import { Cluster } from 'ioredis';
import type { Logger } from '../runtime/logger.js';
import { rateLimited } from '../runtime/logger.js';
import { StartupError } from '../runtime/startup.js';
import { evictionProblem, type Redis } from './connect.js';

// A Redis ready for what it holds: answering, and never evicting it (BullMQ loses jobs under
// eviction). Services that need Redis at start wait for it; those that run without it check it
// the first time it answers.

export interface CheckedRedis {
  client: Redis;
  holds: 'queue' | 'payloads';
  /** the variable that names it, for messages */
  variable: string;
}

/**
 * Waits until every Redis answers (saying so at most every 10 s), then refuses one whose eviction
 * policy would lose what it holds. `signal` ends the wait (a SIGTERM before Redis ever came).
 */
export async function connectChecked(targets: readonly CheckedRedis[], logger: Logger, signal?: AbortSignal): Promise<void> {
  const logWait = rateLimited(10_000);
  const started = Date.now();
  for (const { client, variable } of targets) {
    while (client.status !== 'ready') {
      signal?.throwIfAborted();
      // a connection still being made is not worth a line
      if (Date.now() - started >= 1_000) logWait(() => logger.warn({ redis: redisAddress(client) }, `Waiting for Redis (${variable}) to answer`));
      // a second at most, so the line above is said
      await untilReady(client, signal ? AbortSignal.any([signal, AbortSignal.timeout(1_000)]) : AbortSignal.timeout(1_000));
    }
  }
  for (const { client, holds, variable } of targets) {
    const problem = await evictionProblem(client, holds, variable);
    if (problem) throw new StartupError(problem);
  }
}

/** Resolves once `client` is ready, or when `signal` aborts; its connection errors are waited out. */
export async function untilReady(client: Redis, signal: AbortSignal): Promise<void> {
  // once() also ends on the connection's 'error' events: the wait goes on until ready or aborted
  while (client.status !== 'ready' && !signal.aborted) await once(client, 'ready', { signal }).catch(() => undefined);
}

/** host:port of a connection (a cluster's seed nodes), never its password. */
function redisAddress(client: Redis): string {
  if (client instanceof Cluster) return 'the Redis Cluster';
  const { host, port, path } = client.options;
  return path ?? `${host}:${port}`;
}

/**
 * For services that run without Redis and connect whenever it comes: the first time `client`
 * answers, its eviction policy is checked, and `refuse` is called with the problem if there is one.
 */
export function refuseEvictingRedis({ client, holds, variable }: CheckedRedis, refuse: (problem: string) => void): void {
  client.once('ready', () => {
    evictionProblem(client, holds, variable).then(
      (problem) => problem && refuse(problem),
      () => undefined, // not answering after all: whatever uses it reports that
    );
  });
}
