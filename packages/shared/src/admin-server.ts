import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BindAddress } from './config.js';
import { listen } from './startup.js';

// The admin address of each service (METRICS_BIND): Prometheus metrics and the health checks
// that orchestrators and the compose file use. Kept off the public port on purpose.

/** name → ok; the service is ready when every check passes */
export type Readiness = () => Promise<Record<string, boolean>>;

/** A prom-client Registry, or the cluster primary's view of its workers' metrics. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface AdminServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Answers a request the admin server does not (it returns false to let it). */
export type AdminRoute = (req: IncomingMessage, res: ServerResponse) => boolean;

export async function startAdminServer(
  bind: BindAddress,
  registry: MetricsSource,
  readiness: Readiness,
  variable = 'METRICS_BIND',
  route?: AdminRoute,
): Promise<AdminServer> {
  const server = createServer((req, res) => {
    if (route?.(req, res)) return;
    const path = (req.url ?? '/').split('?', 1)[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => send(200, registry.contentType, text),
        (error: Error) => send(500, 'text/plain', `metrics failed: ${error.message}\n`),
      );
    } else if (path === '/livez') {
      send(200, 'text/plain', 'ok\n');
    } else if (path === '/readyz') {
      readiness().then(
        (checks) => {
          const ready = Object.values(checks).every(Boolean);
          send(ready ? 200 : 503, 'application/json', `${JSON.stringify({ ready, checks })}\n`);
        },
        (error: Error) => send(503, 'application/json', `${JSON.stringify({ ready: false, error: error.message })}\n`),
      );
    } else {
      send(404, 'text/plain', 'not found: try /metrics, /livez or /readyz\n');
    }
  });
  await listen(server, bind, variable);
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
