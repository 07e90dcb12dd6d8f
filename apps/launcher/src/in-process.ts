import { serveProxy } from '@imgproxy-cache/proxy/main';
import {
  configOrSay,
  createLogger,
  type Ended,
  type Env,
  type Logger,
  type ProxyConfig,
  StartupError,
  tuneGarbageCollection,
  type Unit,
  type UploaderConfig,
} from '@imgproxy-cache/shared';
import { startUploaderService } from '@imgproxy-cache/uploader/main';

// UPLOADER_IN_PROXY: the proxy and the uploader in npm start's own process, one unit for the
// supervisor instead of a child process each; their start-up is their apps' main.ts, as their own
// entry points run it.

type Service = { close(timeoutMs: number): Promise<void> };

/** Both services, or a unit that ends with 2 (as their own processes would) when either is misconfigured. */
export function startInProcess(proxyEnv: Env, uploaderEnv: Env): Unit {
  const proxyConfig = configOrSay(proxyEnv, 'proxy');
  const uploaderConfig = configOrSay(uploaderEnv, 'uploader');
  if (!proxyConfig || !uploaderConfig) {
    return { name: 'proxy and uploader', ended: Promise.resolve({ code: 2, signal: null }), stop() {}, kill() {} };
  }
  return new InProcessUnit(proxyConfig, uploaderConfig);
}

class InProcessUnit implements Unit {
  readonly name = 'proxy and uploader';
  readonly ended: Promise<Ended>;
  private end!: (code: number) => void;
  private readonly starting = new AbortController();
  private readonly proxyLogger: Logger;
  private readonly uploaderLogger: Logger;
  private proxy: Service | undefined;
  private uploader: Service | undefined;
  private stopping = false;

  constructor(
    private readonly proxyConfig: ProxyConfig,
    private readonly uploaderConfig: UploaderConfig,
  ) {
    this.ended = new Promise((resolve) => (this.end = (code) => resolve({ code, signal: null })));
    this.proxyLogger = createLogger('proxy', proxyConfig.logLevel);
    this.uploaderLogger = createLogger('uploader', uploaderConfig.logLevel);
    tuneGarbageCollection();
    this.start().catch((error: Error) => {
      const role = this.uploader ? 'proxy' : 'uploader';
      console.error(`imgproxy-cache ${role}: ${error instanceof StartupError ? error.message : (error.stack ?? error.message)}`);
      void Promise.all([this.proxy?.close(0), this.uploader?.close(0)]).finally(() => this.end(error instanceof StartupError ? 2 : 1));
    });
  }

  private async start(): Promise<void> {
    const { proxyConfig, uploaderConfig } = this;
    this.uploader = await startUploaderService(uploaderConfig, this.uploaderLogger, { signal: this.starting.signal, ownProcess: false });
    if (this.starting.signal.aborted) return;
    const proxy = await serveProxy(proxyConfig, this.proxyLogger);
    if (this.starting.signal.aborted) {
      // stopped while it waited for imgproxy: stop() ran without it
      await proxy?.close(proxyConfig.shutdownTimeoutMs);
      return;
    }
    this.proxy = proxy;
    if (!proxy) {
      await this.uploader?.close(uploaderConfig.shutdownTimeoutMs);
      this.end(1);
    }
  }

  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.starting.abort();
    const { proxyConfig, uploaderConfig, proxyLogger, uploaderLogger } = this;
    proxyLogger.info('Shutting down: finishing in-flight responses');
    uploaderLogger.info('Shutting down: finishing uploads in flight');
    // at once, as two processes signalled together would: each within SHUTDOWN_TIMEOUT_MS
    Promise.all([
      this.proxy?.close(proxyConfig.shutdownTimeoutMs).then(() => proxyLogger.info('Proxy stopped')),
      this.uploader?.close(uploaderConfig.shutdownTimeoutMs).then(() => uploaderLogger.info('Uploader stopped')),
    ]).then(
      () => this.end(0),
      (error: Error) => {
        proxyLogger.error({ err: error.message }, 'Error while shutting down');
        this.end(1);
      },
    );
  }

  /** Services in this process cannot be ended from outside it: each bounds its own shutdown. */
  kill(): void {
    this.stop();
  }
}
