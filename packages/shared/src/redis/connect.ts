import { Cluster, type ClusterOptions, Redis as Standalone, type RedisOptions as StandaloneOptions } from 'ioredis';

/** A connection to one Redis, or to a Redis Cluster (REDIS_CLUSTER=true). */
export type Redis = Standalone | Cluster;

export interface RedisOptions {
  /** called (rate-limit it yourself) for connection errors; ioredis reconnects by itself */
  onError?: (error: Error) => void;
  /** REDIS_CLUSTER: the URL is a comma-separated list of seed nodes of a Redis Cluster */
  cluster?: boolean;
}

/** What ioredis connects to for a URL: `unix:///run/redis.sock` is the socket's path. */
export function redisTarget(url: string): string {
  return url.startsWith('unix:') ? decodeURIComponent(new URL(url).pathname) : url;
}

/** Reconnect forever, a little slower each time, never slower than every 2 s. */
const retryStrategy = (times: number): number => Math.min(times * 100, 2000);

/**
 * For every client of a Redis Cluster: a command rides out a failover instead of failing after
 * ioredis's default 16 redirections at 100 ms (about 1.6 s, shorter than cluster-node-timeout plus
 * an election). 64 tries at 100–200 ms last about 10 s. A dead master's slots are answered with
 * MOVED to it until the failover ends, so those retries wait too; and the slot map is refreshed
 * every 2 s, which ioredis 5 no longer does by default, so that clients learn of a promotion even
 * when no command failed (a master that hangs).
 */
const CLUSTER_OPTIONS: ClusterOptions = {
  maxRedirections: 64,
  retryDelayOnFailover: 200,
  retryDelayOnMoved: 100,
  retryDelayOnClusterDown: 200,
  slotsRefreshInterval: 2000,
};

/**
 * A connection for `url` with `options`: one Redis, or a Redis Cluster from its seed nodes (each
 * `redis://` or `rediss://`; the first one's user and password serve for all, as do TLS and the
 * options for every node's connection).
 */
function connect(url: string, options: StandaloneOptions, { cluster, onError }: RedisOptions, clusterOptions: ClusterOptions = {}): Redis {
  let redis: Redis;
  if (cluster) {
    const seeds = url.split(',').map((u) => new URL(u.trim()));
    const first = seeds[0]!;
    const { enableOfflineQueue, ...nodeOptions } = options;
    redis = new Cluster(
      seeds.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })),
      {
        ...CLUSTER_OPTIONS,
        ...clusterOptions,
        enableOfflineQueue,
        clusterRetryStrategy: retryStrategy,
        redisOptions: {
          ...nodeOptions,
          username: decodeURIComponent(first.username) || undefined,
          password: decodeURIComponent(first.password) || undefined,
          tls: first.protocol === 'rediss:' ? {} : undefined,
        },
      },
    );
  } else {
    redis = new Standalone(redisTarget(url), { ...options, retryStrategy });
  }
  redis.on('error', (error: Error) => {
    lastErrors.set(redis, error.message);
    onError?.(error);
  });
  redis.on('ready', () => lastErrors.delete(redis));
  return redis;
}

/** The last connection error of each connection, until it is ready again: /readyz says it. */
const lastErrors = new WeakMap<Redis, string>();

/**
 * /readyz's check of some connections: true when each is ready, else why not (the variable, the
 * connection's state and its last error; ioredis's messages name the address, never the password).
 */
export function redisCheck(connections: readonly { client: Redis; variable: string }[]): true | string {
  for (const { client, variable } of connections) {
    if (client.status === 'ready') continue;
    const error = lastErrors.get(client);
    return `${variable}: ${client.status}${error ? ` (${error})` : ''}`;
  }
  return true;
}

/**
 * For the proxy: a command either runs now or fails now. With the offline queue off, nothing waits
 * for a Redis that is down, so a Redis outage costs a client nothing; ioredis keeps reconnecting
 * in the background and caching resumes by itself.
 */
export function createProducerRedis(url: string, options: RedisOptions = {}): Redis {
  return connect(
    url,
    {
      enableOfflineQueue: false,
      // Auto-pipelining copies every command once more to join the writes of one tick; at the
      // rates users run there is rarely a second command to join (bench/PROFILE.md).
      enableAutoPipelining: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      // A Redis that hangs (stopped, its sockets open: ioredis#559) is written to until the OS
      // gives up, which it never does while the peer's kernel still acknowledges. Silence while a
      // command waits ends the socket instead; its commands are retried (on a cluster, at the new
      // master) and the hand-off waits for the reconnection (ENQUEUE_WAIT_MS).
      socketTimeout: PRODUCER_SOCKET_TIMEOUT_MS,
      lazyConnect: false,
    },
    options,
  );
}

/** The producer's commands answer in milliseconds; a silence this long is a Redis that hangs. */
const PRODUCER_SOCKET_TIMEOUT_MS = 2000;

/**
 * BullMQ blocks on Redis for at most 10 s (Worker.maximumBlockTimeout), so a silence of 15 s on
 * a worker's connection is a Redis that hangs, never a blocking wait: the socket is ended and
 * opened again, at the new master on a cluster.
 */
const WORKER_SOCKET_TIMEOUT_MS = 15_000;

/**
 * For BullMQ workers, which block on Redis and require `maxRetriesPerRequest: null` (also the
 * dashboard's and purge's connections, whose commands may wait for a Redis to come back).
 */
export function createWorkerRedis(url: string, options: RedisOptions = {}): Redis {
  return connect(url, { maxRetriesPerRequest: null, connectTimeout: 5000, socketTimeout: WORKER_SOCKET_TIMEOUT_MS }, options, {
    // A Cluster whose ready check fails (CLUSTER INFO says fail: a failover under way) reconnects
    // and never settles the promise its connect() returned (ioredis#709). BullMQ's worker awaits
    // that promise when it resets its blocking connection, and would then never fetch again.
    // Without the check the connection is ready once it has the slots; a command meeting the
    // failover is answered CLUSTERDOWN and tried again (retryDelayOnClusterDown).
    enableReadyCheck: false,
  });
}

/**
 * For a subscriber (purged keys): its SUBSCRIBE waits for the connection instead of failing while
 * it is made, and ioredis subscribes again after every reconnection.
 */
export function createSubscriberRedis(url: string, options: RedisOptions = {}): Redis {
  return connect(url, { maxRetriesPerRequest: null, connectTimeout: 5000, enableOfflineQueue: true }, options);
}

/** Every Redis that holds data: the masters of a cluster, or the one Redis. */
export function dataNodes(redis: Redis): Standalone[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

/**
 * One line naming what is wrong with a Redis's eviction policy for what it holds, or undefined.
 * The queue's Redis must never evict (BullMQ loses jobs); a separate payload Redis may evict keys
 * with a TTL (payloads, staged bytes), never the backlog counter, which has none.
 */
export async function evictionProblem(redis: Redis, holds: 'queue' | 'payloads', variable: string): Promise<string | undefined> {
  for (const node of dataNodes(redis)) {
    const problem = policyProblem(/^maxmemory_policy:(\S+)/m.exec(await node.info('memory'))?.[1], holds, variable);
    if (problem) return problem;
  }
  return undefined;
}

function policyProblem(policy: string | undefined, holds: 'queue' | 'payloads', variable: string): string | undefined {
  if (policy === undefined) return undefined; // a server that does not say (some managed ones)
  if (holds === 'queue' && policy !== 'noeviction') {
    return `${variable} points at a Redis with maxmemory-policy ${policy}, which loses queued uploads when memory fills: run it with maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in its configuration)`;
  }
  if (holds === 'payloads' && policy.startsWith('allkeys-')) {
    return `${variable} points at a Redis with maxmemory-policy ${policy}, which may evict the upload backlog counter: run it with volatile-lru (or noeviction)`;
  }
  return undefined;
}
