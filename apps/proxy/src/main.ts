import type { Logger, ProxyConfig } from '@imgproxy-cache/shared';
import { Pool } from 'undici';
import { waitForImgproxy } from './imgproxy/health.js';
import { type RunningProxy, startProxy } from './server/start-proxy.js';

// The proxy as a service: imgproxy waited for, then served. Run by its own process (index.ts), or
// inside `npm start`'s with the uploader (UPLOADER_IN_PROXY).

/** The serving proxy, or undefined (and a fatal line logged) when imgproxy never became healthy. */
export async function serveProxy(config: ProxyConfig, logger: Logger): Promise<RunningProxy | undefined> {
  if (!(await imgproxyReady(config, logger))) return undefined;
  const proxy = await startProxy(config, logger);
  logger.info({ port: proxy.port, imgproxyUrl: config.proxy.imgproxyUrl.href }, `Proxy listening on ${config.proxy.bind.host ?? ''}:${proxy.port}`);
  return proxy;
}

/** Waits for imgproxy's health check, HEALTH_CHECK_TIMEOUT_IN_SEC at most. */
export async function imgproxyReady(config: ProxyConfig, logger: Logger): Promise<boolean> {
  const probe = new Pool(config.proxy.imgproxyUrl.origin, { connections: 1 });
  const ready = await waitForImgproxy(probe, config.proxy.imgproxyBasePath, config.proxy.healthCheckTimeoutSec, logger);
  await probe.close();
  if (!ready) {
    logger.fatal(
      { imgproxyUrl: config.proxy.imgproxyUrl.href },
      `imgproxy did not become healthy within ${config.proxy.healthCheckTimeoutSec}s (HEALTH_CHECK_TIMEOUT_IN_SEC); is it running at IMGPROXY_URL?`,
    );
  }
  return ready;
}
