import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import {
  configOrExit,
  createLogger,
  createUploadQueue,
  createWorkerRedis,
  exitOnSignal,
  listen,
  rateLimited,
  refuseEvictingRedis,
  runMain,
} from '@imgproxy-cache/shared';
import { createDashboard } from './dashboard.js';

// Entry point of `npm run start:dashboard`.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'dashboard');
  const logger = createLogger('dashboard', config.logLevel);
  const logRedisError = rateLimited(10_000);
  const redis = createWorkerRedis(config.redisUrl, {
    onError: (error) => logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error')),
  });
  refuseEvictingRedis({ client: redis, holds: 'queue', variable: 'REDIS_URL' }, (problem) => {
    logger.fatal(problem);
    process.exit(2);
  });
  const queue = createUploadQueue(config.queue.name, redis, { skipVersionCheck: true });
  const server = createAdaptorServer({ fetch: createDashboard(config, queue).fetch }) as Server;
  await listen(server, config.dashboard.bind, 'DASHBOARD_BIND');
  const { host } = config.dashboard.bind;
  const { port } = server.address() as AddressInfo;
  logger.info(
    { port, auth: config.dashboard.user !== undefined },
    `Dashboard listening on ${host ?? ''}:${port}${config.dashboard.user === undefined ? ' (no auth: loopback only)' : ''}`,
  );
  exitOnSignal(logger, { stopping: 'Shutting down', stopped: 'Dashboard stopped' }, async () => {
    server.close();
    await queue.close().catch(() => undefined);
    redis.disconnect();
  });
}

runMain('dashboard', main);
