import { Pool } from 'undici';
import { configOrExit, createLogger, exitOnSignal, runMain } from '@imgproxy-cache/shared';
import { waitForImgproxy } from './health.js';
import { startProxy } from './server.js';

// Entry point: configuration from the environment, wait for imgproxy, serve, stop on signals.

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'proxy');
  const logger = createLogger('proxy', config.logLevel);

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

  const proxy = await startProxy(config, logger);
  logger.info({ port: proxy.port, imgproxyUrl: config.proxy.imgproxyUrl.href }, `Proxy listening on ${config.proxy.bind.host ?? ''}:${proxy.port}`);

  exitOnSignal(logger, { stopping: 'Shutting down: finishing in-flight responses', stopped: 'Proxy stopped' }, () =>
    proxy.close(config.shutdownTimeoutMs),
  );
}

runMain('proxy', main);
