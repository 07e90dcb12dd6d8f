import { ConfigError, loadConfig, type Role, type RoleConfigs } from '../config/index.js';
import type { Logger } from './logger.js';
import { StartupError } from './startup.js';

// What every entry point does the same way: read the configuration or stop with the reasons, and
// stop cleanly, once, on SIGTERM or SIGINT.

/** The configuration for `role`, or undefined once every bad variable is said. */
export function configOrSay<R extends Role>(env: Readonly<Record<string, string | undefined>>, role: R): RoleConfigs[R] | undefined {
  try {
    return loadConfig(env, role);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`imgproxy-cache ${role}: ${error.message}`);
    return undefined;
  }
}

/** The configuration for `role`, or exit 2 listing every bad variable. */
export function configOrExit<R extends Role>(env: Readonly<Record<string, string | undefined>>, role: R): RoleConfigs[R] {
  return configOrSay(env, role) ?? process.exit(2);
}

/**
 * On the first SIGTERM or SIGINT: log `stopping`, run `stop`, log `stopped` and exit 0 (1 if
 * `stop` failed). Later signals are ignored: `stop` is already bounded by its own timeout.
 */
export function exitOnSignal(logger: Logger, messages: { stopping: string; stopped: string }, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, messages.stopping);
    stop().then(
      () => {
        logger.info(messages.stopped);
        process.exit(0);
      },
      (error: Error) => {
        logger.error({ err: error.message }, 'Error while shutting down');
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: with no listener left, a second signal would kill the process mid-shutdown
  // (Node's default action), losing what it was finishing.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * Runs an entry point's `main`: a StartupError exits 2 with its one line; anything else exits 1
 * with the error.
 */
export function runMain(role: Role, main: () => Promise<void>): void {
  main().catch((error: Error) => {
    if (error instanceof StartupError) {
      console.error(`imgproxy-cache ${role}: ${error.message}`);
      process.exit(2);
    }
    console.error(`imgproxy-cache ${role}: ${error.stack ?? error.message}`);
    process.exit(1);
  });
}
