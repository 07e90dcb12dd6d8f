import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@imgproxy-cache/shared';
import type { Dispatcher } from 'undici';

/** One probe of imgproxy's `/health` (200 `imgproxy is running`): true, or why not; never throws. */
export async function imgproxyHealth(upstream: Dispatcher, basePath: string, timeoutMs: number): Promise<true | string> {
  try {
    const { statusCode, body } = await upstream.request({
      method: 'GET',
      path: `${basePath}/health`,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await body.dump();
    return statusCode === 200 || `imgproxy's /health answered ${statusCode}`;
  } catch (error) {
    const e = error as Error & { code?: string };
    return `imgproxy's /health did not answer: ${e.code ?? e.name}`;
  }
}

export async function imgproxyHealthy(upstream: Dispatcher, basePath: string, timeoutMs: number): Promise<boolean> {
  return (await imgproxyHealth(upstream, basePath, timeoutMs)) === true;
}

/**
 * Polls imgproxy's `/health` until it answers 200 or `timeoutSec` has passed, with the original
 * tool's log lines. Resolves false on time-out; the caller exits.
 */
export async function waitForImgproxy(upstream: Dispatcher, basePath: string, timeoutSec: number, logger: Logger, intervalMs = 250): Promise<boolean> {
  logger.info('Waiting for imgproxy to be ready...');
  const deadline = Date.now() + timeoutSec * 1000;
  for (;;) {
    const left = deadline - Date.now();
    if (await imgproxyHealthy(upstream, basePath, Math.max(100, Math.min(2000, left)))) {
      logger.info('imgproxy is ready');
      return true;
    }
    if (Date.now() + intervalMs > deadline) return false;
    await sleep(intervalMs);
  }
}
