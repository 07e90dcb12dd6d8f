import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { cacheKeyOf, loadConfig } from '@imgproxy-cache/shared';
import { type Browser, chromium } from 'playwright-core';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createDashboard } from '../apps/uploader/src/dashboard.js';
import { spawnService } from './support/service.js';
import { type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// The dashboard of failed uploads in a real browser: Debian's chromium driven by playwright-core
// (.ci/run installs both). An operator logs in, finds the failed upload by its key, retries it,
// and the object lands.

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && !process.env.CI) console.warn(`dashboard browser test skipped: ${CHROMIUM} missing (apt-get install -y chromium)`);

let stack: Stack | undefined;
let server: Server | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  await stack?.stop();
  stack = server = browser = undefined;
});

async function startDashboard(s: Stack, env: Record<string, string>): Promise<string> {
  const config = loadConfig({ QUEUE_NAME: s.config.queue.name, S3_BUCKET: s.bucket, ...env }, 'dashboard');
  const { app } = createDashboard(config, [s.queue]);
  server = await new Promise<Server>((resolve) => {
    const started = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(started as Server));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('dashboard', () => {
  it('answers 401 without credentials, and refuses to start on a public address without them', async () => {
    stack = await startStack({ noUploader: true });
    const s = stack;
    const url = await startDashboard(s, { DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'pw' });
    expect((await request(`${url}/`)).statusCode).toBe(401);
    expect((await request(`${url}/api/queues`)).statusCode).toBe(401);
    const authorized = await request(`${url}/api/queues`, { headers: { authorization: `Basic ${Buffer.from('ops:pw').toString('base64')}` } });
    expect(authorized.statusCode).toBe(200);
    await authorized.body.dump();

    const refused = spawnService(['apps/uploader/dist/dashboard-main.js'], { DASHBOARD_BIND: '0.0.0.0:0' });
    expect(await refused.exited()).toBe(2);
    expect(refused.output()).toMatch(/DASHBOARD_USER and DASHBOARD_PASSWORD are required when DASHBOARD_BIND \(0\.0\.0\.0:0\) is not a loopback address/);
  });

  it.skipIf(!haveChromium && !process.env.CI)('shows a failed upload by key with its reason; Retry lands the object', async () => {
    stack = await startStack({ env: { UPLOAD_ATTEMPTS: '1' } });
    const s = stack;
    const path = '/sig/rs:fit:64:64/plain/https://example.com/denied.jpg@png';
    const key = cacheKeyOf(path);
    s.tap.fault = (r) => (r.method === 'PUT' ? { kind: 'status', status: 403, code: 'AccessDenied', message: 'Access Denied' } : undefined);
    await s.get(path);
    await waitFor(async () => (await s.queue.getJob(key))?.failedReason, { what: 'the upload to fail' });
    const url = await startDashboard(s, { DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'pw' });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage({ httpCredentials: { username: 'ops', password: 'pw' } });
    await page.goto(`${url}/queue/${encodeURIComponent(s.config.queue.name)}?status=failed`);
    const card = page.locator('[class*="card"]', { hasText: key }).first();
    await card.waitFor({ timeout: 15_000 });
    await expect(card.textContent()).resolves.toContain(path);
    // the reason, on one line (no stack trace to wade through)
    await card.getByText('S3OperationError: PutObject 403 AccessDenied: Access Denied').waitFor({ timeout: 10_000 });
    await expect(card.textContent()).resolves.not.toContain('s3-writer');

    s.tap.fault = undefined; // S3 accepts writes again
    await card.locator('button:has(svg.lucide-refresh-cw)').click(); // the card's Retry
    const confirm = page.getByRole('button', { name: /^confirm$/i });
    await confirm.waitFor({ timeout: 2_000 }).then(
      () => confirm.click(),
      () => undefined,
    );
    const stored = await s.waitForObject(path);
    expect(stored.body.equals(s.stub.imageFor(path))).toBe(true);
  });
});
