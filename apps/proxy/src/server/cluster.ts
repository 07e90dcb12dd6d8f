import cluster, { type Worker } from 'node:cluster';
import { type AdminServer, type Check, type Logger, type ProxyConfig, standalonePurger, startAdminServer } from '@imgproxy-cache/shared';
import { AggregatorRegistry } from 'prom-client';
import { purgeRoutes } from '../admin/purge-routes.js';
import type { RunningProxy } from './start-proxy.js';

// PROXY_WORKERS > 1: several processes share the proxy port (Node's cluster). The primary serves no
// images: it starts the workers, replaces one that dies, answers METRICS_BIND for all of them
// (their metrics summed, /readyz only when every worker is ready), and stops them on SIGTERM.

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

/** Runs in the primary until SIGTERM/SIGINT; resolves the exit code. */
export function supervise(config: ProxyConfig, logger: Logger): Promise<number> {
  const count = config.proxy.workers;
  const live = new Map<number, Worker>(); // by worker id
  const listening = new Set<number>();
  let announced = false;
  let stopping = false;
  let exitCode = 0;
  let admin: AdminServer | undefined;
  const closers: (() => Promise<void>)[] = [];
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));

  const fork = () => {
    const worker = cluster.fork();
    live.set(worker.id, worker);
    worker.on('message', (message: ListeningMessage) => {
      if (message?.type !== LISTENING) return;
      listening.add(worker.id);
      if (announced) logger.info({ pid: worker.process.pid }, 'The new proxy worker is listening');
      if (announced || listening.size < count) return;
      announced = true;
      logger.info(
        { port: message.port, workers: count, imgproxyUrl: config.proxy.imgproxyUrl.href },
        `Proxy listening on ${config.proxy.bind.host ?? ''}:${message.port}`,
      );
    });
  };

  cluster.on('exit', (worker, code, signal) => {
    live.delete(worker.id);
    const wasListening = listening.delete(worker.id);
    if (stopping) {
      // one still starting has nothing in flight: SIGTERM simply ends it
      if (code !== 0 && wasListening) exitCode = 1;
      if (live.size === 0) void stopped();
      return;
    }
    if (!wasListening) {
      // It never served: the next one would fail the same way (port taken, say).
      logger.fatal({ pid: worker.process.pid, code, signal }, 'A proxy worker failed to start; stopping');
      stop(code === 2 ? 2 : 1); // 2: it said why (configuration, an address in use)
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'A proxy worker exited; starting another');
    fork();
  });

  async function stopped(): Promise<void> {
    await admin?.close();
    for (const close of closers) await close();
    logger.info('Proxy stopped');
    finish(exitCode);
  }

  function stop(code: number): void {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    if (live.size === 0) {
      void stopped();
      return;
    }
    for (const worker of live.values()) worker.process.kill('SIGTERM');
    // each worker bounds its own shutdown by SHUTDOWN_TIMEOUT_MS; this is for one that hangs anyway
    setTimeout(() => {
      for (const worker of live.values()) worker.process.kill('SIGKILL');
    }, config.shutdownTimeoutMs + 5_000).unref();
  }

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    logger.info({ signal }, 'Shutting down: finishing in-flight responses');
    stop(0);
  };
  process.on('SIGTERM', onSignal); // `on`: a second signal must not kill the primary mid-shutdown
  process.on('SIGINT', onSignal);

  for (let i = 0; i < count; i++) fork();

  if (config.metricsBind) {
    const aggregator = new AggregatorRegistry();
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
    // DELETE /cache (purge) with connections of the primary's own, made on first use
    let purging: ReturnType<typeof standalonePurger> | undefined;
    const purger = () => {
      purging ??= standalonePurger(config);
      return purging.purger;
    };
    const purge = config.s3.bucket ? purgeRoutes(config.proxy.adminToken, purger, config.imgproxyBaseUrl) : undefined;
    closers.push(async () => purging?.close());
    void startAdminServer(
      config.metricsBind,
      { contentType: aggregator.contentType, metrics: () => aggregator.clusterMetrics() },
      async () => {
        const id = nextId++;
        const answers = await Promise.all([...live.values()].map((w) => ask(w, id)));
        // true when every worker says so, else the first worker's reason
        const all = (name: string): Check =>
          answers.every((a) => a?.[name] === true) ? true : (answers.find((a) => typeof a?.[name] === 'string')?.[name] ?? false);
        return {
          serving: !stopping,
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
        stop(2);
      },
    );
  }

  return finished;
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
