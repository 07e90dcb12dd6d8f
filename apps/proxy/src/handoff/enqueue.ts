import { setTimeout as sleep } from 'node:timers/promises';
import {
  createUploadQueue,
  type DedupOutcome,
  dedup,
  type JobState,
  JobStates,
  type Logger,
  PayloadStore,
  type ProxyConfig,
  type Redis,
  rateLimited,
  redisKeys,
  type StoreResult,
  shardOf,
  shardQueueNames,
  storeMode,
  type TeeRequest,
  type TeeResult,
  UPLOAD_JOB_NAME,
  type UploadJobData,
  uploadJobOptions,
} from '@imgproxy-cache/shared';
import { Job, type Queue } from 'bullmq';
import { Gatherer } from './gatherer.js';

// Hands a complete, cacheable image to the uploaders: its payload (metadata and bytes) into a key
// of its own with a TTL, then its BullMQ job, whose id is the cache key. What happens for an image
// Redis already knows is the dedup rule's (shared/src/dedup.ts). It runs after the client's
// response has ended and never throws. A Redis that does not answer (restarting, a cluster
// failover, a master that hangs) is waited for, within ENQUEUE_WAIT_MS and the bound on bytes
// waiting for Redis; a hand-off tried again is safe, since the dedup rule makes it idempotent.
// The images of a shard completed within ENQUEUE_GATHER_MS go together: their tees in one round
// trip, then their new jobs in one addBulk (gatherer.ts).

export type EnqueueOutcome =
  | DedupOutcome
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES of bytes already wait for upload
  | 'redis-down' // not connected within ENQUEUE_WAIT_MS (or the proxy is stopping): skipped
  | 'redis-busy' // too many bytes already on their way to a Redis that does not answer: skipped at once
  | 'timeout' // an attempt was still unanswered at the deadline (ENQUEUE_WAIT_MS, or ENQUEUE_TIMEOUT_MS if longer)
  | 'error';

export interface EnqueueRequest {
  data: UploadJobData;
  /** the encoded payload (shared/src/payload.ts) */
  payload: Buffer;
  /** the proxy just found no object for it in the bucket: a marker saying it was uploaded is out of date */
  objectGone?: boolean;
}

export interface Enqueuer {
  /**
   * Why the image with this cache key would only be refused right now, if it would: its shard's
   * backlog was full a moment ago, or Redis is not answering. The response is then not copied.
   */
  shedding(cacheKey: string): 'backlog-full' | 'redis-busy' | undefined;
  enqueue(image: EnqueueRequest): Promise<EnqueueOutcome>;
  /** the queue names it sends images to */
  readonly queueNames: readonly string[];
  close(): Promise<void>;
}

/** One queue shard: its BullMQ queue, its payloads and job states, its part of the backlog. */
interface Shard {
  queue: Queue<UploadJobData>;
  payloads: PayloadStore;
  jobs: JobStates;
  /** images waiting to be teed together, then their new jobs to be added together */
  tees: Gatherer<TeeRequest, TeeResult>;
  adds: Gatherer<UploadJobData, true>;
  backlogMaxBytes: number;
  backlogFull: boolean;
  /** when Redis last said the backlog is full, or the last image was let through to ask again */
  backlogCheckedAt: number;
}

export interface EnqueuerOptions {
  /**
   * While the backlog is full, one image in this interval still goes to Redis and finds out
   * whether there is room again; the others are shed without a copy or a trip to Redis.
   */
  backlogRecheckMs?: number;
  /** the clock (tests) */
  now?: () => number;
  /**
   * Most bytes of images sent to Redis and not answered yet. A Redis that is alive but does not
   * answer (stopped, swapping, blocked by a slow script) would otherwise collect every image in
   * the proxy's memory. Default: 2 × CACHE_MAX_BYTES, at least 32 MiB.
   */
  maxPendingBytes?: number;
}

class TimeoutError extends Error {}

/** A batch goes at once when it holds this many images or bytes (a pipeline is one write). */
const BATCH_MAX_IMAGES = 64;
const BATCH_MAX_BYTES = 4 * 2 ** 20;

/** How long to wait before trying a failed hand-off again (a failover takes seconds). */
const RETRY_PAUSE_MS = 200;

/**
 * Redis answers that trying again cannot change (a script error, OOM under noeviction); anything
 * else (a closed connection, no answer, a cluster between masters) may pass.
 */
function hopeless(error: Error): boolean {
  return error.name === 'ReplyError' && !/^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|LOADING|READONLY|MASTERDOWN|BUSY)\b/.test(error.message);
}

export class RedisEnqueuer implements Enqueuer {
  readonly queueNames: readonly string[];
  private readonly shards: Shard[];
  private readonly split: boolean;
  private readonly logFailure = rateLimited(10_000);
  private readonly backlogRecheckMs: number;
  private readonly now: () => number;
  private readonly maxPendingBytes: number;
  /** bytes of payloads waiting for Redis, or sent and not answered yet (whatever ENQUEUE_TIMEOUT_MS said) */
  private pendingBytes = 0;
  private readonly waitMs: number;
  /** the proxy is stopping: waits end */
  private readonly closing = new AbortController();
  /** settles when the proxy stops: one listener on `closing`, shared by every wait */
  private readonly closed = new Promise<void>((resolve) => this.closing.signal.addEventListener('abort', () => resolve(), { once: true }));
  /** the next 'ready' of each connection, shared by the images waiting for it */
  private readonly readyWaits = new Map<Redis, Promise<void>>();

  /** `payloadRedis` is the queue's `redis` unless PAYLOAD_REDIS_URL names another. */
  constructor(
    private readonly redis: Redis,
    private readonly payloadRedis: Redis,
    private readonly config: ProxyConfig,
    private readonly logger: Logger,
    options: EnqueuerOptions = {},
  ) {
    this.backlogRecheckMs = options.backlogRecheckMs ?? 100;
    this.now = options.now ?? Date.now;
    this.maxPendingBytes = options.maxPendingBytes ?? Math.max(2 * config.proxy.cacheMaxBytes, 32 * 2 ** 20);
    this.waitMs = config.proxy.enqueueWaitMs;
    this.queueNames = shardQueueNames(config.queue.name, config.queue.shards);
    const windowMs = config.proxy.enqueueGatherMs;
    this.shards = this.queueNames.map((name) => {
      // the services check the eviction policy themselves; BullMQ's own check only warns
      const queue = createUploadQueue(name, redis, { skipVersionCheck: true });
      const payloads = new PayloadStore(payloadRedis, redisKeys(name));
      return {
        queue,
        payloads,
        jobs: new JobStates(redis, redisKeys(name)),
        tees: new Gatherer((images) => payloads.teeMany(images), {
          windowMs,
          maxItems: BATCH_MAX_IMAGES,
          maxBytes: BATCH_MAX_BYTES,
          sizeOf: (image) => image.payload.length,
        }),
        // the tees of one batch are answered together: their adds gather in the same turn
        adds: new Gatherer((jobs) => this.addAll(queue, jobs), { windowMs: 0, maxItems: BATCH_MAX_IMAGES, maxBytes: Infinity, sizeOf: () => 0 }),
        backlogMaxBytes: Math.floor(config.proxy.backlogMaxBytes / config.queue.shards),
        backlogFull: false,
        backlogCheckedAt: 0,
      };
    });
    this.split = payloadRedis !== redis;
  }

  private shardOf(cacheKey: string): Shard {
    return this.shards[shardOf(cacheKey, this.shards.length)]!;
  }

  shedding(cacheKey: string): 'backlog-full' | 'redis-busy' | undefined {
    if (this.pendingBytes >= this.maxPendingBytes) {
      this.reportBusy();
      return 'redis-busy';
    }
    const shard = this.shardOf(cacheKey);
    if (!shard.backlogFull) return undefined;
    const now = this.now();
    if (now - shard.backlogCheckedAt < this.backlogRecheckMs) return 'backlog-full';
    shard.backlogCheckedAt = now; // this image goes to Redis and asks
    return undefined;
  }

  async enqueue(image: EnqueueRequest): Promise<EnqueueOutcome> {
    if (this.pendingBytes + image.payload.length > this.maxPendingBytes) {
      this.reportBusy();
      return 'redis-busy';
    }
    const held = this.hold(image.payload.length);
    try {
      return await this.untilHandedOff(image, held);
    } finally {
      held.release();
    }
  }

  /**
   * Attempts, one at a time, until one succeeds or the deadline: ENQUEUE_WAIT_MS, or
   * ENQUEUE_TIMEOUT_MS if that is longer. An attempt that fails (a closed connection, a cluster
   * between masters) is followed by another once Redis is ready; a slow one is waited for, never
   * doubled.
   */
  private async untilHandedOff(image: EnqueueRequest, held: Held): Promise<EnqueueOutcome> {
    const { enqueueTimeoutMs, enqueueGatherMs } = this.config.proxy;
    // the window an image waits for others to go with it comes on top of either bound
    const deadline = this.now() + Math.max(this.waitMs, enqueueTimeoutMs) + enqueueGatherMs;
    for (;;) {
      const away = [this.redis, this.payloadRedis].find((r) => r.status !== 'ready');
      if (away) {
        if (await this.readyBy(away, deadline)) continue;
        this.report('redis-down', image, new Error(`Redis is ${away.status}${this.waitMs > 0 ? ` after ${this.waitMs} ms (ENQUEUE_WAIT_MS)` : ''}`));
        return 'redis-down';
      }
      try {
        const left = deadline - this.now();
        return await withTimeout(this.attempt(image, held), Math.max(1, left), Math.max(this.waitMs, enqueueTimeoutMs));
      } catch (error) {
        const e = error as Error;
        if (e instanceof TimeoutError || hopeless(e) || this.closing.signal.aborted || this.now() + RETRY_PAUSE_MS >= deadline) {
          const outcome = e instanceof TimeoutError ? 'timeout' : 'error';
          this.report(outcome, image, e);
          return outcome;
        }
        await sleep(RETRY_PAUSE_MS, undefined, { signal: this.closing.signal }).catch(() => undefined);
      }
    }
  }

  /** Resolves true once `client` is ready, false at `deadline` or when the proxy stops. */
  private readyBy(client: Redis, deadline: number): Promise<boolean> {
    const left = deadline - this.now();
    if (left <= 0 || this.closing.signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(client.status === 'ready'), left);
      void this.nextReady(client).then(() => {
        clearTimeout(timer);
        resolve(client.status === 'ready' && !this.closing.signal.aborted);
      });
    });
  }

  /**
   * One wait per connection, however many images wait on it: a listener each would trip Node's
   * MaxListeners warning on every Redis restart under load, which reads like a leak. Not
   * events.once(): it ends on the 'error' events ioredis emits while it reconnects.
   */
  private nextReady(client: Redis): Promise<void> {
    let waiting = this.readyWaits.get(client);
    if (!waiting) {
      waiting = Promise.race([new Promise<void>((resolve) => client.once('ready', () => resolve())), this.closed]).finally(() =>
        this.readyWaits.delete(client),
      );
      this.readyWaits.set(client, waiting);
    }
    return waiting;
  }

  /**
   * Counts an image's bytes as held for Redis while it waits and while any command carrying them
   * has not been answered: `release` ends the first, `also` adds each command.
   */
  private hold(size: number): Held {
    let holders = 1;
    this.pendingBytes += size;
    const drop = () => {
      holders -= 1;
      if (holders === 0) this.pendingBytes -= size;
    };
    return {
      release: drop,
      also: <T>(sent: Promise<T>) => {
        holders += 1;
        sent.then(drop, drop);
        return sent;
      },
    };
  }

  private async attempt({ data, payload, objectGone }: EnqueueRequest, held: Held): Promise<EnqueueOutcome> {
    const id = data.cacheKey;
    const shard = this.shardOf(id);
    const opts = { ttlSec: this.config.queue.payloadTtlSec, backlogMaxBytes: shard.backlogMaxBytes, objectGone };
    let state: JobState;
    let result: StoreResult;
    if (this.split) {
      state = await shard.jobs.of(id, objectGone);
      const mode = storeMode(state);
      result = mode === 'never' ? 'skipped' : await held.also(shard.payloads.store(id, payload, mode, opts));
    } else {
      ({ state, result } = await held.also(shard.tees.submit({ id, payload, opts })));
    }
    if (result === 'lost') throw new Error('the image bytes did not reach Redis');
    if (result === 'backlog-full') {
      this.noteBacklog(shard, true);
      return 'backlog-full';
    }
    if (result === 'stored') this.noteBacklog(shard, false);
    const decision = dedup(state, result === 'present');
    if (decision.next === 'add') await shard.adds.submit(data);
    if (decision.next === 'retry') await this.retry(shard.queue, data, state as 'failed' | 'completed');
    return decision.outcome;
  }

  /** New jobs in one round trip; a job that exists already (another proxy's) is left as it is. */
  private async addAll(queue: Queue<UploadJobData>, jobs: readonly UploadJobData[]): Promise<true[]> {
    await queue.addBulk(jobs.map((data) => ({ name: UPLOAD_JOB_NAME, data, opts: uploadJobOptions(this.config.queue, data.cacheKey) })));
    return jobs.map(() => true);
  }

  /** The image's finished job runs again, and finds the bytes just stored. */
  private async retry(queue: Queue<UploadJobData>, data: UploadJobData, state: 'failed' | 'completed'): Promise<void> {
    const job = await Job.fromId<UploadJobData>(queue, data.cacheKey);
    if (!job) {
      // removed since (retention, or by hand): a new one
      await queue.add(UPLOAD_JOB_NAME, data, uploadJobOptions(this.config.queue, data.cacheKey));
      return;
    }
    try {
      await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
    } catch {
      // Another response for the image retried it first (or someone did from the dashboard):
      // it runs either way, and reads the newest bytes.
    }
  }

  /** Logs once when a shard's backlog fills up and once when it has room again. */
  private noteBacklog(shard: Shard, full: boolean): void {
    if (full) shard.backlogCheckedAt = this.now();
    if (full === shard.backlogFull) return;
    shard.backlogFull = full;
    if (full) {
      this.logger.warn(
        { backlogMaxBytes: shard.backlogMaxBytes, queue: shard.queue.name },
        'Upload backlog is full (CACHE_BACKLOG_MAX_BYTES): new images are served but not cached until uploads catch up',
      );
    } else {
      this.logger.info({ queue: shard.queue.name }, 'Upload backlog has room again: caching resumed');
    }
  }

  async close(): Promise<void> {
    for (const shard of this.shards) shard.tees.flush();
    this.closing.abort();
    await Promise.all(this.shards.map((s) => s.queue.close().catch(() => undefined)));
  }

  private reportBusy(): void {
    this.logFailure((suppressed) =>
      this.logger.warn(
        { outcome: 'redis-busy', pendingBytes: this.pendingBytes, suppressed },
        'Redis is not answering and enough image bytes already wait for it: new images are served but not cached until it answers',
      ),
    );
  }

  private report(outcome: EnqueueOutcome, image: EnqueueRequest, error: Error): void {
    this.logFailure((suppressed) =>
      this.logger.warn(
        { outcome, path: image.data.path, key: image.data.cacheKey, err: error.message, suppressed },
        'Could not queue image for upload; the client was served, the image was not cached',
      ),
    );
  }
}

interface Held {
  release(): void;
  also<T>(sent: Promise<T>): Promise<T>;
}

/** `promise`, or a TimeoutError after `ms` (saying `boundMs`, the bound that ran out). */
function withTimeout<T>(promise: Promise<T>, ms: number, boundMs = ms): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`no answer from Redis within ${boundMs} ms`)), ms);
  });
  promise.catch(() => undefined); // a late failure after the timeout is already reported
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
