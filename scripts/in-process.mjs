// UPLOADER_IN_PROXY: the proxy and the uploader in this process (npm start's own), instead of a
// child process each. What start-all.mjs gets back behaves as a child process does for it: kill()
// stops both, 'exit' says how they ended (2 for a StartupError, as the services' own mains).
import { EventEmitter } from 'node:events';
import { serveProxy } from '../apps/proxy/dist/main.js';
import { startUploaderService } from '../apps/uploader/dist/main.js';
import { ConfigError, createLogger, loadConfig, StartupError, tuneGarbageCollection } from '../packages/shared/dist/index.js';

/** The role's configuration, or undefined once its problems are said (as configOrExit says them). */
function configFor(env, role) {
  try {
    return loadConfig(env, role);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`imgproxy-cache ${role}: ${error.message}`);
    return undefined;
  }
}

export function startInProcess(proxyEnv, uploaderEnv) {
  const unit = new EventEmitter();
  unit.exitCode = null;
  unit.signalCode = null;
  const exit = (code) => {
    if (unit.exitCode !== null) return;
    unit.exitCode = code;
    unit.emit('exit', code, null);
  };
  const proxyConfig = configFor(proxyEnv, 'proxy');
  const uploaderConfig = configFor(uploaderEnv, 'uploader');
  if (!proxyConfig || !uploaderConfig) {
    // exit 2 as the services would, once start-all listens: it then stops its Redis too
    unit.kill = () => true;
    setImmediate(() => exit(2));
    return unit;
  }
  const proxyLogger = createLogger('proxy', proxyConfig.logLevel);
  const uploaderLogger = createLogger('uploader', uploaderConfig.logLevel);
  tuneGarbageCollection();

  const starting = new AbortController();
  let proxy;
  let uploader;
  let stopping = false;

  const stop = async () => {
    proxyLogger.info('Shutting down: finishing in-flight responses');
    uploaderLogger.info('Shutting down: finishing uploads in flight');
    // at once, as two processes signalled together would: each within SHUTDOWN_TIMEOUT_MS
    await Promise.all([
      proxy?.close(proxyConfig.shutdownTimeoutMs).then(() => proxyLogger.info('Proxy stopped')),
      uploader?.close(uploaderConfig.shutdownTimeoutMs).then(() => uploaderLogger.info('Uploader stopped')),
    ]);
  };
  unit.kill = () => {
    if (stopping) return true;
    stopping = true;
    starting.abort();
    stop().then(
      () => exit(0),
      (error) => {
        proxyLogger.error({ err: error.message }, 'Error while shutting down');
        exit(1);
      },
    );
    return true;
  };

  (async () => {
    uploader = await startUploaderService(uploaderConfig, uploaderLogger, { signal: starting.signal, ownProcess: false });
    if (starting.signal.aborted) return;
    const serving = await serveProxy(proxyConfig, proxyLogger);
    if (starting.signal.aborted) {
      // stopped while it waited for imgproxy: stop() ran without it
      await serving?.close(proxyConfig.shutdownTimeoutMs);
      return;
    }
    proxy = serving;
    if (!proxy) {
      await uploader?.close(uploaderConfig.shutdownTimeoutMs);
      exit(1);
    }
  })().catch((error) => {
    const role = uploader ? 'proxy' : 'uploader';
    console.error(`imgproxy-cache ${role}: ${error instanceof StartupError ? error.message : (error.stack ?? error.message)}`);
    void Promise.all([proxy?.close(0), uploader?.close(0)]).finally(() => exit(error instanceof StartupError ? 2 : 1));
  });
  return unit;
}
