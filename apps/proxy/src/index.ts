import '@imgproxy-cache/shared/require-node';
import cluster from 'node:cluster';
import { configOrExit, createLogger, exitOnSignal, type Logger, type ProxyConfig, runMain, tuneGarbageCollection } from '@imgproxy-cache/shared';
import { imgproxyReady, serveProxy } from './main.js';
import { serveAsWorker, supervise } from './server/cluster.js';
import { startProxy } from './server/start-proxy.js';

// Entry point: configuration from the environment, wait for imgproxy, serve, stop on signals.
// With PROXY_WORKERS > 1 this process supervises that many workers (cluster.ts), each serving.

tuneGarbageCollection();

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'proxy');
  const logger = createLogger('proxy', config.logLevel);

  if (cluster.isWorker) return worker(config, logger.child({ worker: cluster.worker!.id }));

  if (config.proxy.workers > 1) {
    if (!(await imgproxyReady(config, logger))) {
      process.exitCode = 1;
      return;
    }
    process.exit(await supervise(config, logger));
  }

  const proxy = await serveProxy(config, logger);
  if (!proxy) {
    process.exitCode = 1;
    return;
  }

  exitOnSignal(logger, { stopping: 'Shutting down: finishing in-flight responses', stopped: 'Proxy stopped' }, () => proxy.close(config.shutdownTimeoutMs));
}

/** One of PROXY_WORKERS: serves on the shared port; the primary serves METRICS_BIND for all. */
async function worker(config: ProxyConfig, logger: Logger): Promise<void> {
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
