import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { ConfigError, createLogger, createUploadQueue, createWorkerRedis, loadConfig, rateLimited } from '@imgproxy-cache/shared';
import { createDashboard } from './dashboard.js';

// Entry point of `npm run start:dashboard`.

function main(): void {
  let config;
  try {
    config = loadConfig(process.env, 'dashboard');
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`imgproxy-cache dashboard: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger('dashboard', config.logLevel);
  const logRedisError = rateLimited(10_000);
  const redis = createWorkerRedis(config.redisUrl, {
    onError: (error) => logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error')),
  });
  const queue = createUploadQueue(config.queue.name, redis);
  queue.on('error', () => undefined);
  const app = createDashboard(config, queue);
  const { host, port } = config.dashboard.bind;
  const server = serve({ fetch: app.fetch, hostname: host, port }, (info: AddressInfo) => {
    logger.info(
      { port: info.port, auth: config.dashboard.user !== undefined },
      `Dashboard listening on ${host ?? ''}:${info.port}${config.dashboard.user === undefined ? ' (no auth: loopback only)' : ''}`,
    );
  });
  const stop = () => {
    server.close();
    void queue.close().finally(() => {
      redis.disconnect();
      process.exit(0);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main();
