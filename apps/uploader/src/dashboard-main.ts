import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { configOrExit, createLogger, createWorkerRedis, exitOnSignal, rateLimited, runMain } from '@imgproxy-cache/shared';
import { createUploadQueue } from './upload-queue.js';
import { createDashboard } from './dashboard.js';

// Entry point of `npm run start:dashboard`.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'dashboard');
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
  exitOnSignal(logger, { stopping: 'Shutting down', stopped: 'Dashboard stopped' }, async () => {
    server.close();
    await queue.close();
    redis.disconnect();
  });
}

runMain('dashboard', main);
