import type { Reader } from './reader.js';
import { ALL, BOTH, type Variable } from './variable.js';

// The queue every role shares: the Redis it lives in (one, or a cluster), its name and shards, and
// what a job is (attempts, backoff, how long its bytes and its "uploaded" mark are kept).

export const QUEUE_VARIABLES = [
  {
    name: 'REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    roles: [...ALL, 'npm start', 'reindex'],
    description:
      'Redis for the upload queue and the teed bytes: `redis://`, `rediss://` (TLS) or `unix:///path/to/redis.sock`. Must run `maxmemory-policy noeviction`: a service refuses to start on any other policy. Unset, `npm start` and the all-in-one image run a Redis of their own (`DATA_DIR`); the separate services use the default.',
  },
  {
    name: 'REDIS_CLUSTER',
    default: 'false',
    roles: [...ALL, 'reindex'],
    description:
      '`true`: `REDIS_URL` (and `PAYLOAD_REDIS_URL`) name seed nodes of a Redis Cluster, comma-separated (`redis://a:6379,redis://b:6379`; user, password and `rediss://` from the first). Every key of a queue shares one hash tag, so each script touches one slot; spread the load with `QUEUE_SHARDS`.',
  },
  {
    name: 'PAYLOAD_REDIS_URL',
    default: '',
    roles: [...BOTH, 'purge'],
    description:
      "Optional second Redis for the teed bytes only, so that a backlog of bytes can never fill the queue's Redis. Run it with `maxmemory-policy volatile-lru`: an evicted image is stored again by its next request, which its waiting job then finds. `allkeys-*` policies are refused (they could evict the backlog counter).",
  },
  {
    name: 'QUEUE_NAME',
    default: 'imgproxy-cache-uploads',
    roles: [...ALL, 'reindex'],
    description:
      'BullMQ queue name; every Redis key of this tool starts with `bull:{<QUEUE_NAME>}:` (a hash tag: one Redis Cluster slot per queue). Proxy, uploaders and dashboard must agree.',
  },
  {
    name: 'QUEUE_SHARDS',
    default: '1',
    roles: ALL,
    description:
      'Upload queues to spread images over (1–64): an image goes to shard `<first 8 hex digits of its key> mod QUEUE_SHARDS`, queue `<QUEUE_NAME>-<shard>` with a hash tag of its own (with 1, the queue is `QUEUE_NAME`). On a Redis Cluster the shards land on different nodes. Each shard gets an even part of `CACHE_BACKLOG_MAX_BYTES`. Changing it keeps working: uploaders drain the queues of the old count too.',
  },
  {
    name: 'CACHE_PAYLOAD_TTL_SEC',
    default: '86400',
    roles: ['proxy'],
    description:
      'How long teed bytes live in Redis waiting for upload. Must outlast the whole retry window of `UPLOAD_ATTEMPTS` and `UPLOAD_BACKOFF_MS` (checked at start). No image waits longer than this to be cached: a job whose bytes expired gets the bytes of the next request.',
  },
  {
    name: 'CACHE_UPLOADED_TTL_SEC',
    default: '86400',
    roles: ['uploader'],
    description: 'How long an uploaded image is remembered, so that further requests for it tee and enqueue nothing.',
  },
  {
    name: 'UPLOAD_ATTEMPTS',
    default: '10',
    roles: ['proxy'],
    description: 'Upload attempts per image, the first included (set on the job by the proxy that makes it).',
  },
  { name: 'UPLOAD_BACKOFF_MS', default: '1000', roles: ['proxy'], description: 'First retry delay; doubles on each retry, with up to 50% jitter.' },
  {
    name: 'UPLOAD_FAILED_RETENTION_SEC',
    default: '604800',
    roles: ['proxy'],
    description:
      'How long a failed upload stays in the failed set for inspection and retry (7 days). A new request for a failed image queues it again at once.',
  },
] as const satisfies readonly Variable[];

export interface QueueSettings {
  name: string;
  /** QUEUE_SHARDS */
  shards: number;
  attempts: number;
  backoffMs: number;
  payloadTtlSec: number;
  uploadedTtlSec: number;
  failedRetentionSec: number;
}

export interface RedisSettings {
  redisUrl: string;
  /** REDIS_CLUSTER: REDIS_URL and PAYLOAD_REDIS_URL are seed lists of a Redis Cluster */
  redisCluster: boolean;
  /** PAYLOAD_REDIS_URL: a second Redis for the teed bytes; undefined = REDIS_URL holds them */
  payloadRedisUrl: string | undefined;
  queue: QueueSettings;
}

/** redis://, rediss:// (TLS), and unix:///path/to/redis.sock */
const REDIS_PROTOCOLS = ['redis:', 'rediss:', 'unix:'] as const;

export function readQueue(r: Reader): RedisSettings {
  const name = r.raw('QUEUE_NAME');
  if (!/^[A-Za-z0-9._-]+$/.test(name)) r.problem(`QUEUE_NAME may hold only letters, digits, ".", "_" and "-", got "${name}"`);
  const redisCluster = r.bool('REDIS_CLUSTER');
  const payloadRedisUrl = r.raw('PAYLOAD_REDIS_URL') === '' ? undefined : redisUrl(r, 'PAYLOAD_REDIS_URL', redisCluster);
  return {
    redisUrl: redisUrl(r, 'REDIS_URL', redisCluster),
    redisCluster,
    // only the roles that touch the teed bytes connect to their Redis
    payloadRedisUrl: r.reads('PAYLOAD_REDIS_URL') ? payloadRedisUrl : undefined,
    queue: {
      name,
      shards: r.int('QUEUE_SHARDS', 1, 64),
      attempts: r.int('UPLOAD_ATTEMPTS', 1, 50),
      backoffMs: r.int('UPLOAD_BACKOFF_MS', 1),
      payloadTtlSec: r.int('CACHE_PAYLOAD_TTL_SEC', 60),
      uploadedTtlSec: r.int('CACHE_UPLOADED_TTL_SEC', 1),
      failedRetentionSec: r.int('UPLOAD_FAILED_RETENTION_SEC', 1),
    },
  };
}

/** One URL, or with REDIS_CLUSTER a comma-separated list of seed nodes. */
function redisUrl(r: Reader, name: 'REDIS_URL' | 'PAYLOAD_REDIS_URL', cluster: boolean): string {
  if (!cluster) return r.url(name, REDIS_PROTOCOLS).toString();
  const seeds = r
    .raw(name)
    .split(',')
    .map((u) => u.trim());
  for (const seed of seeds) {
    let ok = false;
    try {
      ok = ['redis:', 'rediss:'].includes(new URL(seed).protocol);
    } catch {}
    if (!ok) r.problem(`${name} must be a comma-separated list of redis:// or rediss:// seed nodes with REDIS_CLUSTER=true, got "${seed}"`);
  }
  return seeds.join(',');
}

/** Sum of BullMQ's exponential delays between `attempts` tries: backoff·(2^(attempts−1) − 1). */
export function retryWindowMs(attempts: number, backoffMs: number): number {
  return backoffMs * (2 ** (attempts - 1) - 1);
}
