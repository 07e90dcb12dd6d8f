import type { Reader } from './reader.js';
import type { Variable } from './variable.js';

// The uploaders: how many uploads at once, which shards, how they rest, yield and hold their jobs.

export const UPLOADER_VARIABLES = [
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
] as const satisfies readonly Variable[];

export interface UploaderSettings {
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
}

export function readUploader(r: Reader): UploaderSettings {
  const shardsValue = r.raw('UPLOAD_SHARDS');
  let shards: number[] | undefined;
  if (shardsValue !== '') {
    shards = shardsValue.split(',').map((value) => Number(value.trim()));
    if (shards.some((n) => !Number.isInteger(n) || n < 0))
      r.problem(`UPLOAD_SHARDS must be a comma-separated list of shard numbers (0, 1, ...), got "${shardsValue}"`);
  }
  return {
    concurrency: r.int('UPLOAD_CONCURRENCY', 1, 1000),
    gatherMs: r.int('UPLOAD_GATHER_MS', 0, 60_000),
    stuckMs: r.int('UPLOAD_STUCK_MS', 1000),
    shards,
    nice: r.int('UPLOAD_NICE', 0, 19),
    lockMs: r.int('UPLOAD_LOCK_MS', 1000),
    throttleDelayMs: r.int('UPLOAD_THROTTLE_DELAY_MS', 1),
  };
}
