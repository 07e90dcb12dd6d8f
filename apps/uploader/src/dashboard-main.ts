import '@imgproxy-cache/shared/require-node';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import {
  configOrExit,
  connectForRole,
  createLogger,
  createUploadQueue,
  draining,
  exitOnSignal,
  listen,
  QueueRegistry,
  rateLimited,
  runMain,
  shardQueueNames,
  type UploadJobData,
} from '@imgproxy-cache/shared';
import type { Queue } from 'bullmq';
import { createDashboard } from './dashboard.js';

// Entry point of `npm run start:dashboard`.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'dashboard');
  const logger = createLogger('dashboard', config.logLevel);
  const logRedisError = rateLimited(10_000);
  const connections = connectForRole(config, 'dashboard', (error) =>
    logRedisError((suppressed) => logger.warn({ err: error.message, suppressed }, 'Redis connection error')),
  );
  const { redis } = connections;
  connections.refuseEvicting((problem) => {
    logger.fatal(problem);
    process.exit(2);
  });
  // every shard, and the queues of an earlier QUEUE_SHARDS that still hold jobs (the registry)
  const registry = new QueueRegistry(redis, config.queue.name);
  const queues = new Map<string, Queue<UploadJobData>>();
  const queuesNow = async () => {
    const names = new Set([...shardQueueNames(config.queue.name, config.queue.shards), ...(await registry.names().catch(() => []))]);
    for (const name of names) if (!queues.has(name)) queues.set(name, createUploadQueue(name, redis, { skipVersionCheck: true }));
    return [...names].sort().map((name) => queues.get(name)!);
  };
  const dashboard = createDashboard(config, await queuesNow());
  const refresh = setInterval(() => void queuesNow().then((q) => dashboard.show(q)), 30_000);
  refresh.unref();
  const server = createAdaptorServer({ fetch: dashboard.app.fetch }) as Server;
  const drain = draining(server);
  await listen(server, config.dashboard.bind, 'DASHBOARD_BIND');
  const { host } = config.dashboard.bind;
  const { port } = server.address() as AddressInfo;
  logger.info(
    { port, auth: config.dashboard.user !== undefined },
    `Dashboard listening on ${host ?? ''}:${port}${config.dashboard.user === undefined ? ' (no auth: loopback only)' : ''}`,
  );
  exitOnSignal(logger, { stopping: 'Shutting down', stopped: 'Dashboard stopped' }, async () => {
    clearInterval(refresh);
    // pages being sent finish; keep-alive connections close as they do
    await drain.close(config.shutdownTimeoutMs);
    await Promise.all([...queues.values()].map((q) => q.close().catch(() => undefined)));
    redis.disconnect();
  });
}

runMain('dashboard', main);
