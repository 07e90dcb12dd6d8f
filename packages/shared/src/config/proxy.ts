import { availableParallelism } from 'node:os';
import type { Reader } from './reader.js';
import type { BindAddress, Variable } from './variable.js';

// The proxy: where it listens and finds imgproxy, what it keeps (memory, the bucket read through),
// how it hands images to the uploaders, and who may purge.

export const PROXY_VARIABLES = [
  {
    name: 'IMGPROXY_BIND',
    default: ':8080',
    roles: ['proxy', 'warm'],
    description: 'Proxy listen address, `host:port` or `:port` (`npm run warm` sends its requests there unless given `--proxy`).',
  },
  {
    name: 'IMGPROXY_URL',
    default: 'http://127.0.0.1:8081',
    roles: ['proxy'],
    description: 'Where imgproxy listens. A path here is prepended to every forwarded path.',
  },
  {
    name: 'CACHE_TAG_HEADER',
    default: '',
    roles: ['proxy'],
    description:
      'Opt-in: a response header carrying the tag of the image’s source (the MD5 of its URL), the same for every variant of it, so that a CDN in front of the proxy purges them all by one tag: `Surrogate-Key` (Fastly), `Cache-Tag` (Cloudflare), `Edge-Cache-Tag` (Akamai). Empty: no header. The objects carry the tag as `x-amz-meta-source-tag` whatever this says.',
  },
  {
    name: 'HEALTH_CHECK_TIMEOUT_IN_SEC',
    default: '30',
    roles: ['proxy'],
    description: "How long the proxy waits for imgproxy's `/health` at start before exiting non-zero.",
  },
  {
    name: 'UPSTREAM_TIMEOUT_MS',
    default: '60000',
    roles: ['proxy'],
    description: 'Longest wait for imgproxy to send headers, and longest silence inside a body, before the request fails (502 / cut response).',
  },
  {
    name: 'PROXY_WORKERS',
    default: '1',
    roles: ['proxy', 'npm start'],
    description:
      'Processes serving the proxy port (Node cluster); `0` means one per CPU core. Above 1, the first process only supervises: it waits for imgproxy, starts the workers (replacing any that dies), serves `METRICS_BIND` with their metrics summed, and stops them all on SIGTERM. More workers use more cores and more memory (each holds its own connections and recent keys); on a small host shared with imgproxy, keep 1.',
  },
  {
    name: 'CLIENT_HEADERS_TIMEOUT_MS',
    default: '10000',
    roles: ['proxy'],
    description: 'A client must send its request headers within this time, or gets 408 and is disconnected (slow-loris).',
  },
  {
    name: 'CACHE_READ_THROUGH',
    default: 'false',
    roles: ['proxy'],
    description:
      '`true`: the proxy looks in the bucket before asking imgproxy (one GET), and serves a stored image itself (`X-Cache: HIT`, its stored headers, 304 for a matching `If-None-Match`); otherwise imgproxy answers (`X-Cache: MISS`). A bucket that is slow or failing only sends requests on to imgproxy. Needs `S3_BUCKET`.',
  },
  {
    name: 'S3_READ_TIMEOUT_MS',
    default: '1000',
    roles: ['proxy'],
    description: 'Longest a read from the bucket may take (read-through, or a stored image served while imgproxy is down) before the proxy does without it.',
  },
  {
    name: 'CACHE_MEMORY_BYTES',
    default: '67108864',
    roles: ['proxy'],
    description:
      'Stored images the proxy keeps in memory (64 MiB, split evenly between `PROXY_WORKERS`), least recently used out first, so that a hot image is served without a bucket read: filled by bucket reads and, with `CACHE_READ_THROUGH`, by completed hand-offs; kept only as long as their stored `Cache-Control` lets a shared cache keep them (never `no-store`, `private` or `no-cache`); removed from every proxy by a purge. Serves read-through hits (`X-Cache: HIT`) and stale answers. `0` turns it off.',
  },
  {
    name: 'CACHE_MEMORY_CONFIRM_MS',
    default: '60000',
    roles: ['proxy'],
    description:
      'How long the memory tier trusts the bucket’s last word on an image (its read, or the last confirmation). Past it, the next answer from memory is still sent at once, and one HEAD in the background (per image and window, within `S3_READ_TIMEOUT_MS`) asks the bucket: an image the bucket lost is handed off again from memory without a render; another object at the key, or an image handed off that the bucket never got (its upload failed), leaves memory; a bucket that errors changes nothing. `0` trusts memory until the image’s `Cache-Control` runs out.',
  },
  {
    name: 'ADMIN_TOKEN',
    default: '',
    roles: ['proxy'],
    description:
      'Bearer token for `DELETE /cache/<path or key>` on `METRICS_BIND` (purge an image: the object, its job and bytes, and every proxy’s memory of it), compared in constant time; letters, digits and `-._~+/` (with `=` at the end), as Bearer tokens are. The endpoint is off while this is empty.',
  },
  {
    name: 'CACHE_MAX_BYTES',
    default: '20971520',
    roles: ['proxy', 'warm'],
    description: 'Largest response that is cached (20 MiB). Larger ones are streamed in full and not kept.',
  },
  {
    name: 'CACHE_RECENT_KEYS',
    default: '100000',
    roles: ['proxy'],
    description:
      'How many recently cached images each proxy remembers (for 15 s, or 5 min once uploaded), so that repeated requests for them skip the copy and the trip to Redis. `0` turns it off.',
  },
  {
    name: 'CACHE_BACKLOG_MAX_BYTES',
    default: '268435456',
    roles: ['proxy'],
    description:
      'Most teed bytes waiting in Redis for upload (256 MiB). Past it (S3 down for long, no uploaders, more new images than uploads keep up with) new images are served but not teed until the backlog drains, so Redis never fills up; meanwhile the proxy does not even copy them.',
  },
  {
    name: 'ENQUEUE_GATHER_MS',
    default: '50',
    roles: ['proxy'],
    description:
      'How long a complete image waits for others to be handed off to Redis with it: the images of a shard completed within this window go in one round trip (their bytes and dedup checks), then their jobs in one `addBulk`, which costs the proxy, Redis and the uploaders much less per image than one by one (bench/PROFILE.md). The client has its response already; a new request for the image meanwhile goes to imgproxy without being copied. At most 64 images or 4 MiB go in one batch; the window comes on top of `ENQUEUE_WAIT_MS` and `ENQUEUE_TIMEOUT_MS`. `0` still gathers the images completed in the same turn of the event loop.',
  },
  {
    name: 'ENQUEUE_TIMEOUT_MS',
    default: '1000',
    roles: ['proxy'],
    description:
      'The least time a hand-off to Redis is given after its response ended, however short `ENQUEUE_WAIT_MS`: past the longer of the two, an image whose hand-off Redis has not answered is skipped (`timeout`) and logged.',
  },
  {
    name: 'ENQUEUE_WAIT_MS',
    default: '10000',
    roles: ['proxy'],
    description:
      'How long a complete image waits in the proxy for a Redis that does not answer (restarting, a Redis Cluster failover, a master that hangs), to be handed off as soon as it does; past it, or past the bound on bytes waiting for Redis (2 × `CACHE_MAX_BYTES`, at least 32 MiB), the image is skipped and logged (`redis-down`). The default covers a Redis restart, and a cluster failover with a `cluster-node-timeout` of a few seconds. `0` skips at once. A stopping proxy waits no longer than `SHUTDOWN_TIMEOUT_MS`.',
  },
] as const satisfies readonly Variable[];

export interface ProxySettings {
  bind: BindAddress;
  imgproxyUrl: URL;
  /** the path of IMGPROXY_URL without its trailing slash ('' for none), prepended to every forwarded path */
  imgproxyBasePath: string;
  healthCheckTimeoutSec: number;
  upstreamTimeoutMs: number;
  enqueueTimeoutMs: number;
  /** ENQUEUE_GATHER_MS: how long a complete image waits for others to hand off with it */
  enqueueGatherMs: number;
  /** ENQUEUE_WAIT_MS: how long a complete image waits for a Redis that does not answer */
  enqueueWaitMs: number;
  /** CACHE_READ_THROUGH */
  readThrough: boolean;
  /** S3_READ_TIMEOUT_MS */
  s3ReadTimeoutMs: number;
  /** CACHE_MEMORY_BYTES, this process's share (divided between PROXY_WORKERS); 0 = off */
  memoryBytes: number;
  /** CACHE_MEMORY_CONFIRM_MS: how long memory trusts the bucket's last word on an image; 0 = until it expires */
  memoryConfirmMs: number;
  /** CACHE_TAG_HEADER: the response header carrying the source's tag (undefined: none) */
  tagHeader: string | undefined;
  /** ADMIN_TOKEN: undefined = DELETE /cache off */
  adminToken: string | undefined;
  cacheMaxBytes: number;
  recentKeys: number;
  backlogMaxBytes: number;
  clientHeadersTimeoutMs: number;
  /** PROXY_WORKERS resolved: how many processes serve (1 = no cluster) */
  workers: number;
}

export function readProxy(r: Reader): ProxySettings {
  const imgproxyUrl = r.url('IMGPROXY_URL', ['http:', 'https:']);
  const workers = resolveWorkers(r.int('PROXY_WORKERS', 0, 256));
  const settings: ProxySettings = {
    bind: r.bind('IMGPROXY_BIND', { host: undefined, port: 8080 })!,
    imgproxyUrl,
    imgproxyBasePath: imgproxyUrl.pathname.replace(/\/+$/, ''),
    healthCheckTimeoutSec: r.int('HEALTH_CHECK_TIMEOUT_IN_SEC', 0),
    upstreamTimeoutMs: r.int('UPSTREAM_TIMEOUT_MS', 100),
    enqueueTimeoutMs: r.int('ENQUEUE_TIMEOUT_MS', 10),
    enqueueGatherMs: r.int('ENQUEUE_GATHER_MS', 0, 1_000),
    enqueueWaitMs: r.int('ENQUEUE_WAIT_MS', 0, 600_000),
    readThrough: r.bool('CACHE_READ_THROUGH'),
    s3ReadTimeoutMs: r.int('S3_READ_TIMEOUT_MS', 10),
    // the whole proxy's bound: each serving process holds its share
    memoryBytes: Math.floor(r.int('CACHE_MEMORY_BYTES', 0, 2 ** 40) / workers),
    memoryConfirmMs: r.int('CACHE_MEMORY_CONFIRM_MS', 0),
    adminToken: r.raw('ADMIN_TOKEN') || undefined,
    tagHeader: r.raw('CACHE_TAG_HEADER') || undefined,
    cacheMaxBytes: r.int('CACHE_MAX_BYTES', 1, 512 * 1024 * 1024),
    recentKeys: r.int('CACHE_RECENT_KEYS', 0, 10_000_000),
    backlogMaxBytes: r.int('CACHE_BACKLOG_MAX_BYTES', 1),
    clientHeadersTimeoutMs: r.int('CLIENT_HEADERS_TIMEOUT_MS', 100),
    workers,
  };
  if (settings.tagHeader !== undefined && !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(settings.tagHeader)) {
    r.problem(`CACHE_TAG_HEADER must be a header name (letters, digits, -), got "${settings.tagHeader}"`);
  }
  // what a Bearer token may hold (RFC 6750 §2.1): any other character could never be sent right
  if (settings.adminToken !== undefined && !/^[A-Za-z0-9._~+/-]+=*$/.test(settings.adminToken)) {
    r.problem('ADMIN_TOKEN may hold only letters, digits and -._~+/ (and = at the end), as a Bearer token does');
  }
  return settings;
}

/** PROXY_WORKERS: 0 means one per core. */
function resolveWorkers(value: number): number {
  return value === 0 ? availableParallelism() : value;
}
