import { availableParallelism } from 'node:os';

// The only reader of process.env in the project. Every variable is declared once in VARIABLES with
// its default; loadConfig() parses all of them and reports every bad one at once, each message
// naming the variable, so a misconfigured deployment fails at start with one readable list.

/**
 * The services, `npm start` (scripts/start-all.mjs: the services together, with a Redis of its own
 * if need be), `npm run purge`, `npm run warm`, and `setup-bucket` (the compose file's bucket for a
 * local S3 server).
 */
export type Role = 'proxy' | 'uploader' | 'dashboard' | 'npm start' | 'purge' | 'reindex' | 'setup-bucket' | 'warm';
export type ChecksumMode = 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface BindAddress {
  /** undefined = all interfaces (the `:8080` form) */
  host: string | undefined;
  port: number;
}

export interface Config {
  s3: {
    bucket: string;
    folder: string;
    endpoint: string;
    region: string;
    forcePathStyle: boolean;
    checksumMode: ChecksumMode;
    conditionalWrites: boolean;
    requestTimeoutMs: number;
    /** S3_STORAGE_CLASS: sent on every upload; '' leaves it to the bucket */
    storageClass: string;
  };
  proxy: {
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
    /** IMGPROXY_BASE_URL: prefix of relative sources ('' for none) */
    baseUrl: string;
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
  };
  redisUrl: string;
  /** REDIS_CLUSTER: REDIS_URL and PAYLOAD_REDIS_URL are seed lists of a Redis Cluster */
  redisCluster: boolean;
  /** REDIS_URL was set (npm start runs a Redis of its own when it is not) */
  redisUrlSet: boolean;
  /** DATA_DIR: where npm start's own Redis keeps its files and socket */
  dataDir: string;
  /** UPLOADER_IN_PROXY: npm start runs the uploader in the proxy's process */
  uploaderInProxy: boolean;
  /** PAYLOAD_REDIS_URL: a second Redis for the teed bytes; undefined = REDIS_URL holds them */
  payloadRedisUrl: string | undefined;
  shutdownTimeoutMs: number;
  /** METRICS_BIND: the admin address (/metrics, /livez, /readyz); undefined = off */
  metricsBind: BindAddress | undefined;
  queue: {
    name: string;
    /** QUEUE_SHARDS */
    shards: number;
    attempts: number;
    backoffMs: number;
    payloadTtlSec: number;
    uploadedTtlSec: number;
    failedRetentionSec: number;
  };
  dashboard: {
    bind: BindAddress;
    user: string | undefined;
    password: string | undefined;
  };
  uploader: {
    concurrency: number;
    /** UPLOAD_SHARDS: the shard numbers this uploader works (all when undefined) */
    shards: readonly number[] | undefined;
    /** UPLOAD_GATHER_MS: how long to wait for more jobs once the queue ran dry */
    gatherMs: number;
    /** UPLOAD_STUCK_MS: waiting jobs a shard worker could take and did not, for this long: it is restarted */
    stuckMs: number;
    /** niceness (0–19) the uploader sets on all its threads at start; 0 = leave as started */
    nice: number;
    lockMs: number;
    throttleDelayMs: number;
  };
  logLevel: LogLevel;
}

export interface Variable {
  name: string;
  default: string | undefined;
  /** which services read it; documentation and required-ness */
  roles: readonly Role[];
  /** a default of its own for some services */
  roleDefaults?: Partial<Record<Role, string>>;
  required?: readonly Role[];
  description: string;
}

const BOTH: readonly Role[] = ['proxy', 'uploader'];
const S3_ROLES: readonly Role[] = ['proxy', 'uploader', 'purge', 'reindex', 'setup-bucket', 'warm'];
const ALL: readonly Role[] = ['proxy', 'uploader', 'dashboard', 'purge'];

export const VARIABLES = [
  {
    name: 'S3_BUCKET',
    default: undefined,
    roles: S3_ROLES,
    required: ['uploader', 'purge', 'reindex', 'setup-bucket', 'warm'],
    description:
      'Bucket for processed images. The proxy reads it too, when set: it serves stored images when imgproxy is down, and with `CACHE_READ_THROUGH` before asking imgproxy.',
  },
  { name: 'S3_FOLDER', default: '', roles: S3_ROLES, description: 'Key prefix: `processed` and `processed/` both give `processed/<md5>`.' },
  {
    name: 'S3_ENDPOINT',
    default: 'https://fly.storage.tigris.dev',
    roles: S3_ROLES,
    description: 'S3-compatible endpoint (`https://t3.storage.dev` for Tigris outside Fly, `https://s3.<region>.amazonaws.com` for AWS).',
  },
  { name: 'S3_REGION', default: 'auto', roles: S3_ROLES, description: 'Region used for request signing.' },
  {
    name: 'S3_FORCE_PATH_STYLE',
    default: 'true',
    roles: S3_ROLES,
    description: 'Path-style addressing (MinIO and s3rver need it; Tigris and AWS work either way).',
  },
  {
    name: 'S3_CHECKSUM_MODE',
    default: 'WHEN_REQUIRED',
    roles: ['uploader'],
    description:
      '`WHEN_REQUIRED` or `WHEN_SUPPORTED`: whether uploads also carry a CRC32 checksum (`x-amz-checksum-crc32`). R2, B2 and older MinIO reject it, so the default sends only Content-MD5, which every provider checks.',
  },
  {
    name: 'S3_CONDITIONAL_WRITES',
    default: 'true',
    roles: ['uploader'],
    description:
      'Create objects with `If-None-Match: *`: a new image costs one request, and an object already there is never overwritten blindly (on 412 the uploader looks at it: same bytes count as done, different ones are replaced and logged). Turn off for providers that reject the header; each upload then looks first (HEAD) and writes after.',
  },
  {
    name: 'S3_STORAGE_CLASS',
    default: '',
    roles: ['uploader'],
    description:
      'Storage class of the stored images, sent with every upload (`STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR` on AWS; `STANDARD_IA` on R2). Empty: the bucket’s own default. `GLACIER` and `DEEP_ARCHIVE` are refused: their objects cannot be read without a restore, and pages read images from the bucket. A class the provider does not know fails each upload with a reason naming this variable.',
  },
  {
    name: 'S3_REQUEST_TIMEOUT_MS',
    default: '30000',
    roles: S3_ROLES,
    description:
      'Abort one S3 request (HEAD or PUT) after this long; the SDK tries it once more, then the upload is retried with backoff. `setup-bucket` waits this long for S3 to answer at all.',
  },
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
    name: 'IMGPROXY_BASE_URL',
    default: '',
    roles: ['proxy', 'uploader', 'purge'],
    description:
      'The same value as imgproxy’s own: the prefix of relative source URLs, so that purge by source (`--source`) and the source tags (`CACHE_TAG_HEADER`) name the image imgproxy read.',
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
    name: 'SHUTDOWN_TIMEOUT_MS',
    default: '20000',
    roles: ['proxy', 'uploader', 'dashboard'],
    description:
      "On SIGTERM, how long in-flight responses, their hand-offs to Redis, and uploads in flight may take before the process exits anyway (it exits as soon as they are done: keep-alive connections close as their responses end). Keep it below the orchestrator's grace period.",
  },
  {
    name: 'REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    roles: [...ALL, 'npm start', 'reindex'],
    description:
      'Redis for the upload queue and the teed bytes: `redis://`, `rediss://` (TLS) or `unix:///path/to/redis.sock`. Must run `maxmemory-policy noeviction`: a service refuses to start on any other policy. Unset, `npm start` and the all-in-one image run a Redis of their own (`DATA_DIR`); the separate services use the default.',
  },
  {
    name: 'DATA_DIR',
    default: './data',
    roles: ['npm start'],
    description:
      'Where `npm start` (and the all-in-one image, where it is `/data`) keeps the Redis it runs itself when `REDIS_URL` is not set: its append-only file (fsync every second) and its Unix socket (no TCP port). One `npm start` per directory.',
  },
  {
    name: 'UPLOADER_IN_PROXY',
    default: 'true',
    roles: ['npm start'],
    description:
      "`npm start` (and the all-in-one image) runs the uploader inside its own process, beside the proxy, instead of a process each: about half the memory and less CPU per image (bench/PROFILE.md), for one small machine. Uploads then share the proxy's event loop, so `UPLOAD_NICE` does not apply. `false` runs them as two processes, as it does by default when `PROXY_WORKERS` is above 1 (`true` with it is refused). The separate `proxy` and `uploader` services (compose, scaling out) are not affected.",
  },
  {
    name: 'REDIS_CLUSTER',
    default: 'false',
    roles: [...ALL, 'reindex'],
    description:
      '`true`: `REDIS_URL` (and `PAYLOAD_REDIS_URL`) name seed nodes of a Redis Cluster, comma-separated (`redis://a:6379,redis://b:6379`; user, password and `rediss://` from the first). Every key of a queue shares one hash tag, so each script touches one slot; spread the load with `QUEUE_SHARDS`.',
  },
  {
    name: 'QUEUE_SHARDS',
    default: '1',
    roles: ALL,
    description:
      'Upload queues to spread images over (1–64): an image goes to shard `<first 8 hex digits of its key> mod QUEUE_SHARDS`, queue `<QUEUE_NAME>-<shard>` with a hash tag of its own (with 1, the queue is `QUEUE_NAME`). On a Redis Cluster the shards land on different nodes. Each shard gets an even part of `CACHE_BACKLOG_MAX_BYTES`. Changing it keeps working: uploaders drain the queues of the old count too.',
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
  {
    name: 'UPLOAD_CONCURRENCY',
    default: '8',
    roles: ['uploader'],
    description: 'Uploads in flight per uploader process (shared evenly by the queue shards it works).',
  },
  {
    name: 'UPLOAD_SHARDS',
    default: '',
    roles: ['uploader'],
    description:
      'The queue shards this uploader works, as a comma-separated list of shard numbers (`0,2`); empty means all of them. Queues of an earlier `QUEUE_SHARDS` are drained by every uploader.',
  },
  {
    name: 'UPLOAD_GATHER_MS',
    default: '250',
    roles: ['uploader'],
    description:
      'When the queue runs dry, the uploader waits this long before it takes jobs again, so that the images that arrive meanwhile are uploaded together: at the rates users run, an upload then costs the uploader and Redis much less (bench/PROFILE.md), for at most this much more delay before an image is in the bucket. `0` takes every job as it comes.',
  },
  {
    name: 'UPLOAD_STUCK_MS',
    default: '15000',
    roles: ['uploader'],
    description:
      'Watchdog of each shard worker: when its queue holds jobs it could take (running, not throttled, below its concurrency) and it has taken none of them for this long, it is stuck (after a Redis Cluster failover, see "Redis Cluster"): the uploader logs a warning naming the shard, restarts that worker on a new connection, counts it in `worker_restarts_total`, and `/readyz` says not ready until the new one takes a job. The default is three times BullMQ’s blocking wait.',
  },
  {
    name: 'UPLOAD_NICE',
    default: '10',
    roles: ['uploader'],
    description:
      'CPU niceness the uploader gives itself at start (0–19; `0` leaves it as started). Uploads can wait a moment, responses cannot: where the uploader shares cores with the proxy and imgproxy (one host; `npm start` and the all-in-one image with `UPLOADER_IN_PROXY=false`), it only takes CPU they leave idle, and catches up when load drops (the backlog bound keeps Redis safe meanwhile). Niceness only ranks processes inside one scheduling group: separate containers, systemd units and login sessions (autogroup) each get their own share, so there give the uploader fewer CPU shares instead (docker-compose.yml does; `CPUWeight=` for systemd).',
  },
  {
    name: 'UPLOAD_LOCK_MS',
    default: '15000',
    roles: ['uploader'],
    description:
      'Job lock of an upload in flight, renewed while the uploader lives. When an uploader dies, its uploads go back to the queue within about 1.5 × this. Shorter recovers faster; an uploader whose event loop stalls longer than this may see an upload run twice (harmless: uploads are idempotent).',
  },
  {
    name: 'UPLOAD_THROTTLE_DELAY_MS',
    default: '2000',
    roles: ['uploader'],
    description: 'When S3 answers 503 SlowDown (or 429), the whole queue pauses this long; the upload goes back to the queue without using an attempt.',
  },
  {
    name: 'METRICS_BIND',
    default: ':9464',
    roleDefaults: { uploader: ':9465' },
    roles: [...BOTH, 'warm'],
    description:
      'Admin address of each service: Prometheus `/metrics`, `/livez` and `/readyz`; `off` disables it. The defaults differ so that a proxy and an uploader on one host both start; give each further uploader on a host its own (or `off`). An address already in use stops the service (exit 2).',
  },
  {
    name: 'DASHBOARD_BIND',
    default: '127.0.0.1:3000',
    roles: ['dashboard'],
    description:
      'Where Bull Board (failed uploads, retry) listens, at the root path. On any address but loopback it refuses to start without `DASHBOARD_USER` and `DASHBOARD_PASSWORD`.',
  },
  { name: 'DASHBOARD_USER', default: '', roles: ['dashboard'], description: 'HTTP basic auth user for the dashboard.' },
  {
    name: 'DASHBOARD_PASSWORD',
    default: '',
    roles: ['dashboard'],
    description: 'HTTP basic auth password for the dashboard (set both, or neither on loopback).',
  },
  {
    name: 'LOG_LEVEL',
    default: 'info',
    roles: ALL,
    description: '`fatal`, `error`, `warn`, `info`, `debug` (shows why each response was not cached), `trace` or `silent`.',
  },
] as const satisfies readonly Variable[];

export type VariableName = (typeof VARIABLES)[number]['name'];

/** The README's configuration table (scripts/config-table.mjs writes it; a test compares). */
export function configTable(): string {
  const code = (value: string) => (value === '' ? '*(empty)*' : `\`${value}\``);
  const rows = (VARIABLES as readonly Variable[]).map((v) => {
    let def = v.default === undefined ? '*(required)*' : code(v.default);
    if (v.roleDefaults) {
      const others = Object.entries(v.roleDefaults).map(([role, value]) => `${code(value)} (${role})`);
      def = `${def} (${v.roles.filter((r) => !(r in v.roleDefaults!)).join(', ')}), ${others.join(', ')}`;
    }
    return `| \`${v.name}\` | ${def} | ${v.roles.join(', ')} | ${v.description} |`;
  });
  return ['| Variable | Default | Read by | Meaning |', '|---|---|---|---|', ...rows].join('\n');
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** redis://, rediss:// (TLS), and unix:///path/to/redis.sock */
const REDIS_PROTOCOLS = ['redis:', 'rediss:', 'unix:'] as const;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Parses and validates the environment for one service. Throws ConfigError listing every problem. */
export function loadConfig(env: Env, role: Role): Config {
  const problems: string[] = [];
  const raw = (name: VariableName): string => {
    const spec = VARIABLES.find((v) => v.name === name)!;
    const value = env[name];
    if (value === undefined || value === '') {
      if ((spec as Variable).required?.includes(role)) problems.push(`${name} is required`);
      return (spec as Variable).roleDefaults?.[role] ?? spec.default ?? '';
    }
    return value.trim();
  };
  const int = (name: VariableName, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const value = raw(name);
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
      return min;
    }
    return Number(value);
  };
  const bool = (name: VariableName): boolean => {
    const value = raw(name).toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    if (['false', '0', 'no', 'off'].includes(value)) return false;
    problems.push(`${name} must be true or false, got "${value}"`);
    return false;
  };
  const url = (name: VariableName, protocols: readonly string[]): URL => {
    const value = raw(name);
    try {
      const parsed = new URL(value);
      if (!protocols.includes(parsed.protocol)) throw new Error('protocol');
      return parsed;
    } catch {
      problems.push(`${name} must be a ${protocols.map((p) => p.replace(':', '')).join(' or ')} URL, got "${value}"`);
      return new URL(`${protocols[0]}//invalid`);
    }
  };
  const oneOf = <T extends string>(name: VariableName, values: readonly T[], normalize = (v: string) => v): T => {
    const value = normalize(raw(name));
    if ((values as readonly string[]).includes(value)) return value as T;
    problems.push(`${name} must be one of ${values.join(', ')}, got "${value}"`);
    return values[0]!;
  };

  const dashboardBind = parseBind(raw('DASHBOARD_BIND'));
  if (!dashboardBind) problems.push(`DASHBOARD_BIND must be host:port or :port, got "${raw('DASHBOARD_BIND')}"`);
  const dashboardUser = raw('DASHBOARD_USER') || undefined;
  const dashboardPassword = raw('DASHBOARD_PASSWORD') || undefined;
  if (role === 'dashboard') {
    if ((dashboardUser === undefined) !== (dashboardPassword === undefined)) {
      problems.push('DASHBOARD_USER and DASHBOARD_PASSWORD must be set together');
    } else if (dashboardBind && !isLoopback(dashboardBind.host) && dashboardUser === undefined) {
      problems.push(`DASHBOARD_USER and DASHBOARD_PASSWORD are required when DASHBOARD_BIND (${raw('DASHBOARD_BIND')}) is not a loopback address`);
    }
  }

  const bind = parseBind(raw('IMGPROXY_BIND'));
  if (!bind) problems.push(`IMGPROXY_BIND must be host:port or :port, got "${raw('IMGPROXY_BIND')}"`);

  const metricsValue = raw('METRICS_BIND');
  const metricsBind = metricsValue.toLowerCase() === 'off' ? undefined : parseBind(metricsValue);
  if (metricsValue.toLowerCase() !== 'off' && !metricsBind) problems.push(`METRICS_BIND must be host:port, :port or off, got "${metricsValue}"`);

  const imgproxyUrl = url('IMGPROXY_URL', ['http:', 'https:']);

  const queueName = raw('QUEUE_NAME');
  if (!/^[A-Za-z0-9._-]+$/.test(queueName)) {
    problems.push(`QUEUE_NAME may hold only letters, digits, ".", "_" and "-", got "${queueName}"`);
  }

  const redisCluster = bool('REDIS_CLUSTER');
  /** One URL, or with REDIS_CLUSTER a comma-separated list of seed nodes. */
  const redisUrl = (name: 'REDIS_URL' | 'PAYLOAD_REDIS_URL'): string => {
    if (!redisCluster) return url(name, REDIS_PROTOCOLS).toString();
    const seeds = raw(name)
      .split(',')
      .map((u) => u.trim());
    for (const seed of seeds) {
      let ok = false;
      try {
        ok = ['redis:', 'rediss:'].includes(new URL(seed).protocol);
      } catch {}
      if (!ok) problems.push(`${name} must be a comma-separated list of redis:// or rediss:// seed nodes with REDIS_CLUSTER=true, got "${seed}"`);
    }
    return seeds.join(',');
  };
  const storageClass = (): string => {
    const value = raw('S3_STORAGE_CLASS').trim();
    if (value !== '' && !/^[A-Za-z0-9_-]+$/.test(value)) problems.push(`S3_STORAGE_CLASS must be a storage class name (STANDARD_IA, ...), got "${value}"`);
    else if (/^(GLACIER|DEEP_ARCHIVE)$/i.test(value))
      problems.push(`S3_STORAGE_CLASS=${value} is refused: its objects cannot be read without a restore, and pages read images from the bucket`);
    return value;
  };
  const shardsValue = raw('UPLOAD_SHARDS');
  let uploadShards: number[] | undefined;
  if (shardsValue !== '') {
    uploadShards = shardsValue.split(',').map((v) => Number(v.trim()));
    if (uploadShards.some((n) => !Number.isInteger(n) || n < 0))
      problems.push(`UPLOAD_SHARDS must be a comma-separated list of shard numbers (0, 1, ...), got "${shardsValue}"`);
  }

  const config: Config = {
    s3: {
      bucket: raw('S3_BUCKET'),
      folder: normalizeFolder(raw('S3_FOLDER')),
      endpoint: url('S3_ENDPOINT', ['http:', 'https:']).toString().replace(/\/$/, ''),
      region: raw('S3_REGION'),
      forcePathStyle: bool('S3_FORCE_PATH_STYLE'),
      checksumMode: oneOf('S3_CHECKSUM_MODE', ['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const, (v) => v.toUpperCase()),
      conditionalWrites: bool('S3_CONDITIONAL_WRITES'),
      requestTimeoutMs: int('S3_REQUEST_TIMEOUT_MS', 100),
      storageClass: storageClass(),
    },
    proxy: {
      bind: bind ?? { host: undefined, port: 8080 },
      imgproxyUrl,
      imgproxyBasePath: imgproxyUrl.pathname.replace(/\/+$/, ''),
      healthCheckTimeoutSec: int('HEALTH_CHECK_TIMEOUT_IN_SEC', 0),
      upstreamTimeoutMs: int('UPSTREAM_TIMEOUT_MS', 100),
      enqueueTimeoutMs: int('ENQUEUE_TIMEOUT_MS', 10),
      enqueueGatherMs: int('ENQUEUE_GATHER_MS', 0, 1_000),
      enqueueWaitMs: int('ENQUEUE_WAIT_MS', 0, 600_000),
      readThrough: bool('CACHE_READ_THROUGH'),
      s3ReadTimeoutMs: int('S3_READ_TIMEOUT_MS', 10),
      memoryBytes: 0, // set below, once PROXY_WORKERS is known
      memoryConfirmMs: int('CACHE_MEMORY_CONFIRM_MS', 0),
      adminToken: raw('ADMIN_TOKEN') || undefined,
      baseUrl: raw('IMGPROXY_BASE_URL'),
      tagHeader: raw('CACHE_TAG_HEADER') || undefined,
      cacheMaxBytes: int('CACHE_MAX_BYTES', 1, 512 * 1024 * 1024),
      recentKeys: int('CACHE_RECENT_KEYS', 0, 10_000_000),
      backlogMaxBytes: int('CACHE_BACKLOG_MAX_BYTES', 1),
      clientHeadersTimeoutMs: int('CLIENT_HEADERS_TIMEOUT_MS', 100),
      workers: resolveWorkers(int('PROXY_WORKERS', 0, 256)),
    },
    redisUrl: redisUrl('REDIS_URL'),
    redisCluster,
    redisUrlSet: (env.REDIS_URL ?? '').trim() !== '',
    dataDir: raw('DATA_DIR'),
    uploaderInProxy: bool('UPLOADER_IN_PROXY'),
    payloadRedisUrl: raw('PAYLOAD_REDIS_URL') === '' ? undefined : redisUrl('PAYLOAD_REDIS_URL'),
    shutdownTimeoutMs: int('SHUTDOWN_TIMEOUT_MS', 0),
    metricsBind,
    queue: {
      name: queueName,
      shards: int('QUEUE_SHARDS', 1, 64),
      attempts: int('UPLOAD_ATTEMPTS', 1, 50),
      backoffMs: int('UPLOAD_BACKOFF_MS', 1),
      payloadTtlSec: int('CACHE_PAYLOAD_TTL_SEC', 60),
      uploadedTtlSec: int('CACHE_UPLOADED_TTL_SEC', 1),
      failedRetentionSec: int('UPLOAD_FAILED_RETENTION_SEC', 1),
    },
    dashboard: {
      bind: dashboardBind ?? { host: '127.0.0.1', port: 3000 },
      user: dashboardUser,
      password: dashboardPassword,
    },
    uploader: {
      concurrency: int('UPLOAD_CONCURRENCY', 1, 1000),
      gatherMs: int('UPLOAD_GATHER_MS', 0, 60_000),
      stuckMs: int('UPLOAD_STUCK_MS', 1000),
      shards: uploadShards,
      nice: int('UPLOAD_NICE', 0, 19),
      lockMs: int('UPLOAD_LOCK_MS', 1000),
      throttleDelayMs: int('UPLOAD_THROTTLE_DELAY_MS', 1),
    },
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS, (v) => v.toLowerCase()),
  };
  // the whole proxy's bound: each serving process holds its share
  config.proxy.memoryBytes = Math.floor(int('CACHE_MEMORY_BYTES', 0, 2 ** 40) / config.proxy.workers);

  // The bytes must still be in Redis when the last retry runs, or that retry can only fail.
  const windowSec = retryWindowMs(config.queue.attempts, config.queue.backoffMs) / 1000;
  if (role === 'proxy' && windowSec >= config.queue.payloadTtlSec) {
    problems.push(
      `CACHE_PAYLOAD_TTL_SEC (${config.queue.payloadTtlSec}) must be longer than the retry window of ` +
        `UPLOAD_ATTEMPTS=${config.queue.attempts} and UPLOAD_BACKOFF_MS=${config.queue.backoffMs} (${Math.ceil(windowSec)} s)`,
    );
  }

  if (config.proxy.backlogMaxBytes / config.queue.shards < config.proxy.cacheMaxBytes) {
    problems.push(
      `CACHE_BACKLOG_MAX_BYTES (${config.proxy.backlogMaxBytes}) must be at least CACHE_MAX_BYTES (${config.proxy.cacheMaxBytes}) times QUEUE_SHARDS (${config.queue.shards}): each shard gets an even part`,
    );
  }
  if (config.proxy.tagHeader !== undefined && !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(config.proxy.tagHeader)) {
    problems.push(`CACHE_TAG_HEADER must be a header name (letters, digits, -), got "${config.proxy.tagHeader}"`);
  }
  if (config.proxy.baseUrl !== '' && !/^[a-z][a-z0-9+.-]*:\/\//i.test(config.proxy.baseUrl)) {
    problems.push(`IMGPROXY_BASE_URL must be a URL (http://..., s3://..., local:///...), got "${config.proxy.baseUrl}"`);
  }
  // what a Bearer token may hold (RFC 6750 §2.1): any other character could never be sent right
  if (config.proxy.adminToken !== undefined && !/^[A-Za-z0-9._~+/-]+=*$/.test(config.proxy.adminToken)) {
    problems.push('ADMIN_TOKEN may hold only letters, digits and -._~+/ (and = at the end), as a Bearer token does');
  }
  if (role === 'proxy' && config.proxy.adminToken !== undefined && config.s3.bucket === '') {
    problems.push('ADMIN_TOKEN (purge) needs S3_BUCKET: the bucket to remove images from');
  }
  if (role === 'proxy' && config.proxy.readThrough && config.s3.bucket === '') {
    problems.push('CACHE_READ_THROUGH=true needs S3_BUCKET: the bucket to read from');
  }
  const beyond = uploadShards?.filter((n) => n >= config.queue.shards) ?? [];
  if (role === 'uploader' && beyond.length > 0) {
    problems.push(`UPLOAD_SHARDS names shards ${beyond.join(', ')}, but QUEUE_SHARDS=${config.queue.shards} has shards 0 to ${config.queue.shards - 1}`);
  }
  if (role === 'npm start' && config.uploaderInProxy && config.proxy.workers > 1) {
    // several proxy processes: the uploader in one of its own, unless asked otherwise
    if ((env.UPLOADER_IN_PROXY ?? '').trim() !== '') {
      problems.push(`UPLOADER_IN_PROXY=true runs the proxy in one process: PROXY_WORKERS must be 1, got ${config.proxy.workers}`);
    } else config.uploaderInProxy = false;
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** PROXY_WORKERS: 0 means one per core. */
function resolveWorkers(value: number): number {
  return value === 0 ? availableParallelism() : value;
}

/** Sum of BullMQ's exponential delays between `attempts` tries: backoff·(2^(attempts−1) − 1). */
export function retryWindowMs(attempts: number, backoffMs: number): number {
  return backoffMs * (2 ** (attempts - 1) - 1);
}

/** `processed`, `/processed/` and `processed/` all mean the prefix `processed/`; empty means none. */
export function normalizeFolder(folder: string): string {
  const trimmed = folder.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}

/** Loopback only: 127.0.0.0/8, ::1, localhost. No host (`:3000`) means every interface. */
export function isLoopback(host: string | undefined): boolean {
  return host !== undefined && (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}

/** `:8080`, `0.0.0.0:8080`, `[::1]:8080`, `localhost:0`. */
export function parseBind(value: string): BindAddress | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}
