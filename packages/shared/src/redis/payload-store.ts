import { randomBytes } from 'node:crypto';
import { JOB_STATES, type JobState, type StoreMode, storeMode } from '../contract/dedup.js';
import { defineScripts } from '../contract/lua.js';
import type { RedisKeys } from '../contract/redis-keys.js';
import type { Redis } from './connect.js';

// The teed images in Redis, and their accounting. Every change to a payload goes through one of
// the scripts in packages/shared/commands, so that the backlog counter (the bytes waiting for
// upload, bounded by CACHE_BACKLOG_MAX_BYTES) stays exact: a payload is counted when stored and
// uncounted when uploaded, dropped, replaced or expired (expired ones are swept by later stores).

export type StoreResult =
  | 'stored' // kept as the image's payload
  | 'present' // a payload was there already, and the rule keeps it
  | 'skipped' // the rule stores nothing for this image
  | 'backlog-full' // CACHE_BACKLOG_MAX_BYTES reached: nothing stored
  | 'lost'; // the staged bytes did not reach Redis: nothing stored

/** What a tee found and did: the image's job state, and what became of its bytes. */
export interface TeeResult {
  state: JobState;
  result: StoreResult;
}

export interface StoreOptions {
  ttlSec: number;
  backlogMaxBytes: number;
  /** the bucket holds no object for the image: its uploaded marker, if any, is out of date */
  objectGone?: boolean;
}

/** One image to tee: its cache key, its encoded payload, and how to store it. */
export interface TeeRequest {
  id: string;
  payload: Buffer;
  opts: StoreOptions;
}

interface Commands {
  icTee(...args: (string | number | Buffer)[]): Promise<[JobState, StoreResult]>;
  icJobState(...args: string[]): Promise<JobState>;
  icStorePayload(...args: (string | number)[]): Promise<StoreResult>;
  icDropPayload(...args: string[]): Promise<number>;
  icMarkUploaded(...args: (string | number)[]): Promise<number>;
}

/**
 * Staged bytes that no script claimed (the script failed, or the producer died in between) expire
 * after this. They are outside the backlog count, so it is short: the script runs right behind.
 */
const STAGED_TTL_SEC = 15;

/** Staged keys of concurrent tees of one image, from any proxy, must differ. */
const ATTEMPT_PREFIX = `${randomBytes(6).toString('hex')}-`;

/** The store mode of every state, in the order tee-9.lua takes them. */
const MODES: readonly StoreMode[] = JOB_STATES.map(storeMode);

export class PayloadStore {
  private readonly redis: Redis & Commands;
  private attempts = 0;

  /** `redis` holds the payloads: the queue's Redis, or PAYLOAD_REDIS_URL's. */
  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    defineScripts(redis);
    this.redis = redis as Redis & Commands;
  }

  /**
   * When the payloads share the queue's Redis: the image's job state and, by the dedup rule, its
   * bytes kept or dropped, in one round trip (a SET of the bytes under a staged key, then the
   * script, written together on one connection so that Redis runs them in that order).
   */
  async tee(id: string, payload: Buffer, opts: StoreOptions): Promise<TeeResult> {
    const [teed] = await this.teeMany([{ id, payload, opts }]);
    if (teed instanceof Error) throw teed;
    return teed!;
  }

  /**
   * `tee` for several images in one round trip: every SET and script in one pipeline (one write;
   * the images of one shard share its hash slot). Each image gets its own result or error.
   */
  async teeMany(images: readonly TeeRequest[]): Promise<(TeeResult | Error)[]> {
    const k = this.keys;
    const pipeline = this.redis.pipeline() as ReturnType<Redis['pipeline']> & Pick<Commands, 'icTee'>;
    for (const { id, payload, opts } of images) {
      const staged = this.stagedKey(id);
      pipeline.set(staged, payload, 'EX', STAGED_TTL_SEC);
      pipeline.icTee(
        k.uploaded(id),
        k.job(id),
        k.failed(),
        k.completed(),
        staged,
        k.payload(id),
        k.backlogBytes(),
        k.backlogSizes(),
        k.backlogExpiry(),
        id,
        opts.ttlSec,
        opts.backlogMaxBytes,
        ...MODES,
        opts.objectGone ? '1' : '0',
      );
    }
    const replies = (await pipeline.exec()) ?? [];
    return images.map((_, i) => {
      // a failed SET needs no answer of its own: the script finds no staged bytes and says 'lost'
      const [error, reply] = replies[2 * i + 1] ?? [new Error('Redis gave no answer for the image')];
      if (error) return error;
      const [state, result] = reply as [JobState, StoreResult];
      return { state, result };
    });
  }

  /** With PAYLOAD_REDIS_URL: the bytes kept or dropped by the mode the rule gave for the job's state. */
  async store(id: string, payload: Buffer, mode: StoreMode, opts: StoreOptions): Promise<StoreResult> {
    const k = this.keys;
    const staged = this.stage(id, payload);
    return this.redis.icStorePayload(staged, k.payload(id), k.backlogBytes(), k.backlogSizes(), k.backlogExpiry(), id, mode, opts.ttlSec, opts.backlogMaxBytes);
  }

  /**
   * The bytes go in a plain SET, never as a script argument: Redis copies a script's arguments
   * into Lua strings, which cost more than the SET itself (bench/PROFILE.md).
   */
  private stage(id: string, payload: Buffer): string {
    const staged = this.stagedKey(id);
    this.redis.set(staged, payload, 'EX', STAGED_TTL_SEC).catch(() => undefined); // the script reports 'lost'
    return staged;
  }

  private stagedKey(id: string): string {
    return this.keys.staged(id, `${ATTEMPT_PREFIX}${(this.attempts++).toString(36)}`);
  }

  read(id: string): Promise<Buffer | null> {
    return this.redis.getBuffer(this.keys.payload(id));
  }

  /** Deletes and uncounts the payload: uploaded, or never uploadable. */
  async drop(id: string): Promise<void> {
    const k = this.keys;
    await this.redis.icDropPayload(k.payload(id), k.backlogBytes(), k.backlogSizes(), k.backlogExpiry(), id);
  }

  /**
   * When the payloads share the queue's Redis: the image is in the bucket; remember it (for
   * `uploadedTtlSec`) and drop its payload in one step.
   */
  async markUploaded(id: string, uploadedTtlSec: number): Promise<void> {
    const k = this.keys;
    await this.redis.icMarkUploaded(k.uploaded(id), k.payload(id), k.backlogBytes(), k.backlogSizes(), k.backlogExpiry(), id, uploadedTtlSec);
  }

  /** Bytes currently counted as waiting for upload. */
  async backlogBytes(): Promise<number> {
    return Number((await this.redis.get(this.keys.backlogBytes())) ?? 0);
  }
}

/** What the queue's Redis knows of images: their job state and the uploaded markers. */
export class JobStates {
  private readonly redis: Redis & Commands;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    defineScripts(redis);
    this.redis = redis as Redis & Commands;
  }

  /** `objectGone`: the bucket holds no object for the image (its uploaded marker is out of date). */
  of(id: string, objectGone = false): Promise<JobState> {
    const k = this.keys;
    return this.redis.icJobState(k.uploaded(id), k.job(id), k.failed(), k.completed(), id, objectGone ? '1' : '0');
  }

  /** Whether the image was uploaded recently. */
  async isUploaded(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.uploaded(id))) === 1;
  }

  /** The image is in the bucket: further requests skip it for `ttlSec`. */
  async markUploaded(id: string, ttlSec: number): Promise<void> {
    await this.redis.set(this.keys.uploaded(id), '1', 'EX', ttlSec);
  }
}
