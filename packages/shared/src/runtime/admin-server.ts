import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import type { BindAddress } from '../config/index.js';
import { draining } from './draining.js';
import { listen } from './startup.js';

// The admin address of each service (METRICS_BIND): Prometheus metrics and the health checks
// that orchestrators and the compose file use, as a Hono app; a service may add routes of its own
// (the proxy's purge). Kept off the public port on purpose.

/** A check's result: true, or false and (when known) why not, in one line without secrets. */
export type Check = boolean | string;

/** name → result; the service is ready when every check is true */
export type Readiness = () => Promise<Record<string, Check>>;

/** A prom-client Registry, or the cluster primary's view of its workers' metrics. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface AdminServer {
  server: Server;
  port: number;
  /** answers in flight end (at most `timeoutMs`, 2 s by default), then the port closes */
  close(timeoutMs?: number): Promise<void>;
}

export type AdminApp = Hono<{ Bindings: HttpBindings }>;

/** Adds a service's own routes to the admin app (before its own, which match nothing else). */
export type AdminRoutes = (app: AdminApp) => void;

const NO_STORE = { 'cache-control': 'no-store' };

/** The admin app: `/metrics`, `/livez`, `/readyz`, and `routes`; 404 for anything else. */
export function adminApp(registry: MetricsSource, readiness: Readiness, routes?: AdminRoutes): AdminApp {
  const app: AdminApp = new Hono();
  routes?.(app);
  app.get('/metrics', async (c) => {
    try {
      return c.body(await registry.metrics(), 200, { ...NO_STORE, 'content-type': registry.contentType });
    } catch (error) {
      return c.text(`metrics failed: ${(error as Error).message}\n`, 500, NO_STORE);
    }
  });
  app.get('/livez', (c) => c.text('ok\n', 200, NO_STORE));
  app.get('/readyz', async (c) => {
    try {
      const results = Object.entries(await readiness());
      const checks = Object.fromEntries(results.map(([name, result]) => [name, result === true]));
      const reasons = Object.fromEntries(results.filter(([, result]) => typeof result === 'string'));
      const ready = results.every(([, result]) => result === true);
      const answer = Object.keys(reasons).length > 0 ? { ready, checks, reasons } : { ready, checks };
      return c.body(`${JSON.stringify(answer)}\n`, ready ? 200 : 503, { ...NO_STORE, 'content-type': 'application/json' });
    } catch (error) {
      return c.body(`${JSON.stringify({ ready: false, error: (error as Error).message })}\n`, 503, { ...NO_STORE, 'content-type': 'application/json' });
    }
  });
  app.notFound((c) => c.text('not found: try /metrics, /livez or /readyz\n', 404, NO_STORE));
  return app;
}

export async function startAdminServer(
  bind: BindAddress,
  registry: MetricsSource,
  readiness: Readiness,
  variable = 'METRICS_BIND',
  routes?: AdminRoutes,
): Promise<AdminServer> {
  // Node's own Request and Response stay global: the proxy's image route relies on them.
  const server = createAdaptorServer({ fetch: adminApp(registry, readiness, routes).fetch, overrideGlobalObjects: false }) as Server;
  const drain = draining(server);
  await listen(server, bind, variable);
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: (timeoutMs = 2_000) => drain.close(timeoutMs),
  };
}
