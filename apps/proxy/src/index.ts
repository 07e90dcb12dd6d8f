import { Pool } from 'undici';
import { ConfigError, createLogger, loadConfig } from '@imgproxy-cache/shared';
import { waitForImgproxy } from './health.js';
import { startProxy } from './server.js';

// Entry point: configuration from the environment, wait for imgproxy, serve, stop on signals.

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, 'proxy');
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`imgproxy-cache proxy: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger('proxy', config.logLevel);

  const basePath = config.proxy.imgproxyUrl.pathname.replace(/\/+$/, '');
  const probe = new Pool(config.proxy.imgproxyUrl.origin, { connections: 1 });
  const ready = await waitForImgproxy(probe, basePath, config.proxy.healthCheckTimeoutSec, logger);
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

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'Shutting down: finishing in-flight responses');
    proxy.close(config.shutdownTimeoutMs).then(
      () => {
        logger.info('Proxy stopped');
        process.exit(0);
      },
      (error: Error) => {
        logger.error({ err: error.message }, 'Error while shutting down');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((error: Error) => {
  console.error(`imgproxy-cache proxy: ${error.stack ?? error.message}`);
  process.exit(1);
});
