import '@imgproxy-cache/shared/require-node';
import { configOrExit, createLogger, exitOnSignal, runMain, tuneGarbageCollection } from '@imgproxy-cache/shared';
import { startUploaderService, type UploaderService } from './main.js';

// Entry point of one upload worker. Run as many as you like: nothing in them is per-instance.

tuneGarbageCollection();

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'uploader');
  const logger = createLogger('uploader', config.logLevel);
  // Signals are handled from here on, also while waiting for Redis at start.
  const starting = new AbortController();
  let service: UploaderService | undefined;
  exitOnSignal(logger, { stopping: 'Shutting down: finishing uploads in flight', stopped: 'Uploader stopped' }, async () => {
    starting.abort();
    await service?.close(config.shutdownTimeoutMs);
  });
  service = await startUploaderService(config, logger, { signal: starting.signal, ownProcess: true });
}

runMain('uploader', main);
