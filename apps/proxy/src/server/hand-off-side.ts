import {
  connectForRole,
  createSubscriberRedis,
  type Logger,
  type ProxyConfig,
  purgeChannel,
  QueueRegistry,
  type RoleRedis,
  rateLimited,
  SourceIndex,
} from '@imgproxy-cache/shared';
import { type Enqueuer, type EnqueuerOptions, RedisEnqueuer } from '../handoff/enqueue.js';

// The proxy's side of Redis: the enqueuer the hand-offs go through, the source index they write,
// the registry the uploaders find the queues in, and the channel on which purges are announced.
// The proxy never waits for Redis: while it is away, images are served and not cached.

export interface HandOffSide {
  enqueuer: Enqueuer;
  redis: RoleRedis;
  sources: SourceIndex;
  close(): Promise<void>;
}

export interface HandOffSideOptions {
  /** see EnqueuerOptions (tests) */
  enqueuerOptions?: EnqueuerOptions;
}

export async function startHandOffSide(
  config: ProxyConfig,
  logger: Logger,
  onPurged: (key: string) => void,
  options: HandOffSideOptions,
): Promise<HandOffSide> {
  const logRedisError = rateLimited(10_000);
  const onError = (error: Error) =>
    logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error; images are served but not cached until it is back'));
  const redis = connectForRole(config, 'proxy', onError);
  // Purged images are forgotten by every proxy (the Purger announces them).
  const subscriber = createSubscriberRedis(config.redisUrl, { onError, cluster: config.redisCluster });
  subscriber.on('message', (_channel: string, key: string) => onPurged(key));
  void subscriber.subscribe(purgeChannel(config.queue.name)).catch(() => undefined);
  // A Redis that may evict keys loses queued images: stop as soon as one is seen (at start, or
  // when a Redis that was away at start first answers).
  redis.refuseEvicting((problem) => {
    logger.fatal(problem);
    process.exit(2);
  });
  const enqueuer = new RedisEnqueuer(redis.redis, redis.payloadRedis, config, logger, options.enqueuerOptions);
  // Uploaders find the queues to work in the registry, those of an earlier QUEUE_SHARDS too.
  const registry = new QueueRegistry(redis.redis, config.queue.name);
  const register = () => void registry.register(enqueuer.queueNames).catch(() => undefined);
  redis.redis.on('ready', register);
  const registering = setInterval(register, 60_000);
  registering.unref();
  // Give Redis a moment so that the first images are cached, but never hold the proxy back.
  await redis.readyWithin(2_000);
  return {
    enqueuer,
    redis,
    sources: new SourceIndex(redis.redis, config.queue.name, config.imgproxyBaseUrl),
    async close() {
      clearInterval(registering);
      await enqueuer.close();
      subscriber.disconnect();
      redis.disconnect();
    },
  };
}
