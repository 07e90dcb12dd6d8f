import type { Check } from '../runtime/admin-server.js';
import type { Logger } from '../runtime/logger.js';
import { createProducerRedis, createWorkerRedis, type Redis, redisCheck } from './connect.js';
import { type CheckedRedis, connectChecked, refuseEvictingRedis, untilReady } from './ready.js';

// How every role connects to its Redis, the one way: the queue's Redis (REDIS_URL) and, where the
// role touches the teed bytes, their own (PAYLOAD_REDIS_URL, else the same connection); each
// connection named by its variable for readiness and refusals, and checked for an eviction policy
// that would lose what it holds.

/** The roles that reach Redis, and what each needs of it. */
export type RedisRole = 'proxy' | 'uploader' | 'dashboard' | 'purge' | 'reindex';

export interface RedisSettingsOfRole {
  redisUrl: string;
  redisCluster: boolean;
  payloadRedisUrl?: string | undefined;
}

export interface RoleRedis {
  /** the queue's Redis */
  redis: Redis;
  /** the teed bytes' Redis: PAYLOAD_REDIS_URL's, or `redis` */
  payloadRedis: Redis;
  /** Waits until every connection answers, then refuses one that may evict (StartupError); `signal` ends the wait. */
  ready(logger: Logger, signal?: AbortSignal): Promise<void>;
  /** Resolves once every connection answers, or after `ms` whatever they are (no eviction check). */
  readyWithin(ms: number): Promise<void>;
  /** For roles that run without Redis: the first time each connection answers, `refuse` hears of an evicting policy. */
  refuseEvicting(refuse: (problem: string) => void): void;
  /** /readyz's check: true, or which connection is not ready and why */
  check(): Check;
  /** Ends every connection. */
  disconnect(): void;
}

/**
 * The connections of `role`: the proxy's fail fast and never queue a command (a Redis outage costs
 * a client nothing); everyone else's wait for Redis as long as it takes (BullMQ's workers need it).
 */
export function connectForRole(settings: RedisSettingsOfRole, role: RedisRole, onError: (error: Error) => void): RoleRedis {
  const create = role === 'proxy' ? createProducerRedis : createWorkerRedis;
  const options = { onError, cluster: settings.redisCluster };
  const redis = create(settings.redisUrl, options);
  // set only for the roles that touch the teed bytes (config/queue.ts)
  const payloadRedis = settings.payloadRedisUrl ? create(settings.payloadRedisUrl, options) : redis;
  const targets: CheckedRedis[] = [{ client: redis, holds: 'queue', variable: 'REDIS_URL' }];
  if (payloadRedis !== redis) targets.push({ client: payloadRedis, holds: 'payloads', variable: 'PAYLOAD_REDIS_URL' });
  return {
    redis,
    payloadRedis,
    async readyWithin(ms) {
      const deadline = AbortSignal.timeout(ms);
      await Promise.all(targets.map(({ client }) => untilReady(client, deadline)));
    },
    async ready(logger, signal) {
      try {
        await connectChecked(targets, logger, signal);
      } catch (error) {
        for (const { client } of targets) client.disconnect();
        throw error;
      }
    },
    refuseEvicting(refuse) {
      for (const target of targets) refuseEvictingRedis(target, refuse);
    },
    check: () => redisCheck(targets),
    disconnect() {
      for (const { client } of targets) client.disconnect();
    },
  };
}
