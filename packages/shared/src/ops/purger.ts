import { setTimeout as sleep } from 'node:timers/promises';
import { Job, type Queue } from 'bullmq';
import type { PurgeConfig } from '../config/index.js';
import { cacheKeyOf, objectKeyOf } from '../contract/cache-key.js';
import { sourceOfInput } from '../contract/image-source.js';
import { createUploadQueue, type UploadJobData } from '../contract/queue.js';
import { BULL_PREFIX, redisKeys } from '../contract/redis-keys.js';
import { checkTarget } from '../contract/request-target.js';
import { QueueRegistry, shardQueueNames } from '../contract/shards.js';
import type { Redis } from '../redis/connect.js';
import { connectForRole, type RoleRedis } from '../redis/for-role.js';
import { JobStates, PayloadStore } from '../redis/payload-store.js';
import { SourceIndex } from '../redis/source-index.js';
import { BucketClient } from '../s3/bucket.js';

// Purge: an image forgotten everywhere, so that its next request renders it anew: its object in
// the bucket, its uploaded marker, a job waiting for it and its bytes, and every proxy's memory of
// it (a message on a Redis channel). Used by `npm run purge` and `DELETE /cache/<path or key>`.

/** What a purge found of an image, and removed. */
export interface PurgeReport {
  key: string;
  path?: string;
  object: boolean;
  marker: boolean;
  /** the state its job was in */
  job?: string;
  bytes: boolean;
}

/** A cache key (32 hex digits), or an image path as clients request it. */
export function parsePurgeTarget(input: string): { key: string; path?: string } | { problem: string } {
  if (/^[0-9a-f]{32}$/.test(input)) return { key: input };
  if (!input.startsWith('/')) return { problem: `${input} is neither an image path (starting with "/") nor a key (32 lowercase hex digits)` };
  if (input.includes('?')) return { problem: `${input} has a query string: images are keyed by their path alone, give the path without it` };
  const problem = checkTarget(input);
  if (problem) return { problem: `${input} is not an image path: ${problem.reason}` };
  if (input === '/health') return { problem: '/health is imgproxy’s health check, not an image' };
  return { key: cacheKeyOf(input), path: input };
}

/** Channel on which purged keys are announced to every proxy. */
export function purgeChannel(queueName: string): string {
  return `${BULL_PREFIX}:{${queueName}}:${queueName}:purged`;
}

export function describePurge(report: PurgeReport): string {
  const what = [report.object && 'object', report.marker && 'uploaded marker', report.job && `${report.job} job`, report.bytes && 'teed bytes'].filter(Boolean);
  const name = report.path ? `${report.key} (${report.path})` : report.key;
  return what.length > 0 ? `${name}: removed ${what.join(', ')}` : `${name}: nothing stored (no object, no marker, no job)`;
}

/** What a purge by source found: every stored variant of the source, each purged (or listed). */
export interface SourcePurge {
  source: string;
  tag: string;
  dryRun: boolean;
  /** one per variant: what was removed (a dry run removes nothing) */
  variants: PurgeReport[];
}

/** A source URL as an operator gives it (plain, percent-encoded or base64), or why it is none. */
export function parseSource(input: string | undefined, baseUrl: string): { url: string; tag: string } | { problem: string } {
  if (input === undefined || input.trim() === '') return { problem: 'no source URL given: --source <url> (or ?source=<url>)' };
  if (/\/enc\//.test(input))
    return { problem: `${input} is an encrypted source (imgproxy Pro enc/): it cannot be read, so its images cannot be purged by source` };
  const source = sourceOfInput(input, baseUrl);
  if ('encrypted' in source) return { problem: `${input} is encrypted (imgproxy Pro enc/): it cannot be read, so its images cannot be purged by source` };
  return source;
}

export function describeSourcePurge(result: SourcePurge): string[] {
  if (result.variants.length === 0) return [`${result.source}: nothing stored for this source (tag ${result.tag})`];
  return [
    ...result.variants.map((v) => (result.dryRun ? `${v.key}: would be purged` : describePurge(v))),
    `${result.source}: ${result.variants.length} variant(s) ${result.dryRun ? 'stored (dry run: nothing removed)' : 'purged'} (tag ${result.tag})`,
  ];
}

export function found(report: PurgeReport): boolean {
  return report.object || report.marker || report.job !== undefined || report.bytes;
}

export class Purger {
  private readonly queues = new Map<string, Queue<UploadJobData>>();

  constructor(
    private readonly config: PurgeConfig,
    private readonly redis: Redis,
    private readonly payloadRedis: Redis,
    private readonly bucket: BucketClient,
  ) {}

  async purge(target: { key: string; path?: string }): Promise<PurgeReport> {
    const { key } = target;
    const report: PurgeReport = { ...target, object: false, marker: false, bytes: false };
    // every queue the image may be in: its shard, and those of an earlier QUEUE_SHARDS
    const names = new Set([
      ...shardQueueNames(this.config.queue.name, this.config.queue.shards),
      ...(await new QueueRegistry(this.redis, this.config.queue.name).names()),
    ]);
    for (const name of names) {
      const queue = this.queue(name);
      const job = await Job.fromId<UploadJobData>(queue, key);
      if (job) {
        // an upload in flight would put the object back: let it finish first
        let state = await job.getState();
        for (let i = 0; state === 'active' && i < 100; i++) {
          await sleep(100);
          state = await job.getState();
        }
        if ((await queue.remove(key)) === 1) report.job = state;
      }
      const keys = redisKeys(name);
      if ((await this.payloadRedis.exists(keys.payload(key))) === 1) report.bytes = true;
      await new PayloadStore(this.payloadRedis, keys).drop(key);
      const jobs = new JobStates(this.redis, keys);
      if (await jobs.isUploaded(key)) report.marker = true;
      await this.redis.del(keys.uploaded(key));
    }
    const objectKey = objectKeyOf(this.config.s3.folder, key);
    if ((await this.bucket.headObject(objectKey)) !== undefined) {
      await this.bucket.deleteObject(objectKey);
      report.object = true;
    }
    await this.redis.publish(purgeChannel(this.config.queue.name), key);
    return report;
  }

  /** Every stored variant of a source (the source index), purged one by one; `dryRun` lists them. */
  async purgeSource(source: { url: string; tag: string }, dryRun = false): Promise<SourcePurge> {
    const index = new SourceIndex(this.redis, this.config.queue.name);
    const keys = await index.keys(source.tag);
    const variants: PurgeReport[] = [];
    for (const key of keys) variants.push(dryRun ? { key, object: false, marker: false, bytes: false } : await this.purge({ key }));
    if (!dryRun) await index.remove(source.tag, keys);
    return { source: source.url, tag: source.tag, dryRun, variants };
  }

  private queue(name: string): Queue<UploadJobData> {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = createUploadQueue(name, this.redis, { skipVersionCheck: true });
      this.queues.set(name, queue);
    }
    return queue;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }
}

/** A purger with connections of its own (the CLI, a PROXY_WORKERS primary), and how to close them. */
export function standalonePurger(
  config: PurgeConfig,
  onError: (error: Error) => void = () => undefined,
): { purger: Purger; redis: RoleRedis; close(): Promise<void> } {
  const redis = connectForRole(config, 'purge', onError);
  const bucket = new BucketClient(config.s3, { sockets: 2 });
  const purger = new Purger(config, redis.redis, redis.payloadRedis, bucket);
  return {
    purger,
    redis,
    async close() {
      await purger.close();
      redis.disconnect();
      bucket.close();
    },
  };
}
