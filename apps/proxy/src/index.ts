import '@imgproxy-cache/shared/require-node';
import cluster from 'node:cluster';
import { type Config, configOrExit, createLogger, exitOnSignal, type Logger, runMain, tuneGarbageCollection } from '@imgproxy-cache/shared';
import { Pool } from 'undici';
import { serveAsWorker, supervise } from './cluster.js';
import { waitForImgproxy } from './health.js';
import { startProxy } from './server.js';

// Entry point: configuration from the environment, wait for imgproxy, serve, stop on signals.
// With PROXY_WORKERS > 1 this process supervises that many workers (cluster.ts), each serving.

tuneGarbageCollection();

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'proxy');
  const logger = createLogger('proxy', config.logLevel);

  if (cluster.isWorker) return worker(config, logger.child({ worker: cluster.worker!.id }));

  const probe = new Pool(config.proxy.imgproxyUrl.origin, { connections: 1 });
  const ready = await waitForImgproxy(probe, config.proxy.imgproxyBasePath, config.proxy.healthCheckTimeoutSec, logger);
  await probe.close();
  if (!ready) {
    logger.fatal(
      { imgproxyUrl: config.proxy.imgproxyUrl.href },
      `imgproxy did not become healthy within ${config.proxy.healthCheckTimeoutSec}s (HEALTH_CHECK_TIMEOUT_IN_SEC); is it running at IMGPROXY_URL?`,
    );
    process.exitCode = 1;
    return;
  }

  if (config.proxy.workers > 1) {
    process.exit(await supervise(config, logger));
  }

  const proxy = await startProxy(config, logger);
  logger.info({ port: proxy.port, imgproxyUrl: config.proxy.imgproxyUrl.href }, `Proxy listening on ${config.proxy.bind.host ?? ''}:${proxy.port}`);

  exitOnSignal(logger, { stopping: 'Shutting down: finishing in-flight responses', stopped: 'Proxy stopped' }, () => proxy.close(config.shutdownTimeoutMs));
}

/** One of PROXY_WORKERS: serves on the shared port; the primary serves METRICS_BIND for all. */
async function worker(config: Config, logger: Logger): Promise<void> {
  const proxy = await startProxy({ ...config, metricsBind: undefined }, logger);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    proxy.close(config.shutdownTimeoutMs).then(
      () => process.exit(0),
      (error: Error) => {
        logger.error({ err: error.message }, 'Error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop); // `on`: a second signal must not kill the worker mid-shutdown
  process.on('SIGINT', stop);
  serveAsWorker(proxy);
}

runMain('proxy', main);
