import cluster, { type Worker } from 'node:cluster';
import {
  type AdminServer,
  type Check,
  type Ended,
  type Logger,
  type ProxyConfig,
  Supervisor,
  standalonePurger,
  startAdminServer,
  type Unit,
} from '@imgproxy-cache/shared';
import { AggregatorRegistry } from 'prom-client';
import { purgeRoutes } from '../admin/purge-routes.js';
import type { RunningProxy } from './start-proxy.js';

// PROXY_WORKERS > 1: several processes share the proxy port (Node's cluster). The primary serves no
// images: it starts the workers, replaces one that dies (the Supervisor's policy), answers
// METRICS_BIND for all of them (their metrics summed, /readyz only when every worker is ready), and
// stops them on SIGTERM.

const LISTENING = 'imgproxy-cache:listening';
const READYZ = 'imgproxy-cache:readyz';

interface ListeningMessage {
  type: typeof LISTENING;
  port: number;
}
interface ReadyzMessage {
  type: typeof READYZ;
  id: number;
  checks?: Record<string, Check>;
}

/** A cluster worker as a supervised unit; `listening` once it serves. */
class WorkerUnit implements Unit {
  readonly name = 'proxy worker';
  readonly worker: Worker = cluster.fork();
  listening = false;
  readonly ended = new Promise<Ended>((resolve) => this.worker.once('exit', (code, signal) => resolve({ code, signal: signal as NodeJS.Signals | null })));
  stop(): void {
    this.worker.process.kill('SIGTERM');
  }
  kill(): void {
    this.worker.process.kill('SIGKILL');
  }
}

/** Runs in the primary until SIGTERM/SIGINT; resolves the exit code. */
export function supervise(config: ProxyConfig, logger: Logger): Promise<number> {
  const count = config.proxy.workers;
  let announced = false;
  let admin: AdminServer | undefined;
  const closers: (() => Promise<void>)[] = [];

  const fork = (): WorkerUnit => {
    const unit = new WorkerUnit();
    unit.worker.on('message', (message: ListeningMessage) => {
      if (message?.type !== LISTENING) return;
      unit.listening = true;
      if (announced) logger.info({ pid: unit.worker.process.pid }, 'The new proxy worker is listening');
      if (announced || [...supervisor.running].filter((u) => (u as WorkerUnit).listening).length < count) return;
      announced = true;
      logger.info(
        { port: message.port, workers: count, imgproxyUrl: config.proxy.imgproxyUrl.href },
        `Proxy listening on ${config.proxy.bind.host ?? ''}:${message.port}`,
      );
    });
    return unit;
  };

  const supervisor = new Supervisor({
    ended(unit, { code, signal }) {
      const { worker, listening } = unit as WorkerUnit;
      if (!listening) {
        // It never served: the next one would fail the same way (port taken, say).
        logger.fatal({ pid: worker.process.pid, code, signal }, 'A proxy worker failed to start; stopping');
        return code === 2 ? 2 : 1; // 2: it said why (configuration, an address in use)
      }
      logger.error({ pid: worker.process.pid, code, signal }, 'A proxy worker exited; starting another');
      return fork();
    },
    // one still starting has nothing in flight: SIGTERM simply ends it
    endedWhileStopping: (unit, { code }) => (code !== 0 && (unit as WorkerUnit).listening ? 1 : undefined),
    async afterAll() {
      await admin?.close();
      for (const close of closers) await close();
      logger.info('Proxy stopped');
    },
    // each worker bounds its own shutdown by SHUTDOWN_TIMEOUT_MS; this is for one that hangs anyway
    killAfterMs: config.shutdownTimeoutMs + 5_000,
  });
  supervisor.stopOnSignals((signal) => logger.info({ signal }, 'Shutting down: finishing in-flight responses'));
  for (let i = 0; i < count; i++) supervisor.add(fork());

  if (config.metricsBind) {
    // DELETE /cache (purge) with connections of the primary's own, made on first use
    let purging: ReturnType<typeof standalonePurger> | undefined;
    const purger = () => {
      purging ??= standalonePurger(config);
      return purging.purger;
    };
    const purge = config.s3.bucket ? purgeRoutes(config.proxy.adminToken, purger, config.imgproxyBaseUrl) : undefined;
    closers.push(async () => purging?.close());
    const aggregator = new AggregatorRegistry();
    const readiness = workersReadiness(() => [...supervisor.running].map((u) => (u as WorkerUnit).worker));
    void startAdminServer(
      config.metricsBind,
      { contentType: aggregator.contentType, metrics: () => aggregator.clusterMetrics() },
      async () => {
        const answers = await readiness();
        // true when every worker says so, else the first worker's reason
        const all = (name: string): Check =>
          answers.every((a) => a?.[name] === true) ? true : (answers.find((a) => typeof a?.[name] === 'string')?.[name] ?? false);
        return {
          serving: !supervisor.stopping,
          workers: answers.length === count && answers.every(Boolean),
          imgproxy: all('imgproxy'),
          redis: all('redis'),
        };
      },
      'METRICS_BIND',
      purge,
    ).then(
      (server) => (admin = server),
      (error: Error) => {
        logger.fatal(error.message);
        supervisor.stop(2);
      },
    );
  }

  return supervisor.finished;
}

/** Asks every worker for its /readyz checks (undefined for one that does not answer within 2 s). */
function workersReadiness(workers: () => Worker[]): () => Promise<(Record<string, Check> | undefined)[]> {
  let nextId = 0;
  const ask = (worker: Worker, id: number) =>
    new Promise<Record<string, Check> | undefined>((resolve) => {
      const timer = setTimeout(() => done(undefined), 2_000);
      const onMessage = (message: ReadyzMessage) => {
        if (message?.type === READYZ && message.id === id) done(message.checks);
      };
      function done(checks: Record<string, Check> | undefined) {
        clearTimeout(timer);
        worker.off('message', onMessage);
        resolve(checks);
      }
      worker.on('message', onMessage);
      if (worker.isConnected()) worker.send({ type: READYZ, id } satisfies ReadyzMessage);
      else done(undefined);
    });
  return () => {
    const id = nextId++;
    return Promise.all(workers().map((w) => ask(w, id)));
  };
}

/** Runs in a worker once its proxy listens: reports to the primary and answers its questions. */
export function serveAsWorker(proxy: RunningProxy): void {
  AggregatorRegistry.setRegistries([proxy.metrics.registry]);
  new AggregatorRegistry(); // installs the answer to the primary's metrics requests
  process.on('message', (message: ReadyzMessage) => {
    if (message?.type !== READYZ) return;
    void proxy.readiness().then((checks) => process.send?.({ type: READYZ, id: message.id, checks } satisfies ReadyzMessage));
  });
  // A primary killed outright leaves no orphans: Node's cluster ends a worker whose channel to
  // its primary closes unexpectedly (test/services.test.ts checks it).
  process.send?.({ type: LISTENING, port: proxy.port } satisfies ListeningMessage);
}
