import type { Reader } from './reader.js';
import { ALL, type BindAddress, BOTH, type LogLevel, type Variable } from './variable.js';

// What every service has: its admin address, how long it may take to stop, how much it logs.

export const RUNTIME_VARIABLES = [
  {
    name: 'SHUTDOWN_TIMEOUT_MS',
    default: '20000',
    roles: ['proxy', 'uploader', 'dashboard'],
    description:
      "On SIGTERM, how long in-flight responses, their hand-offs to Redis, and uploads in flight may take before the process exits anyway (it exits as soon as they are done: keep-alive connections close as their responses end). Keep it below the orchestrator's grace period.",
  },
  {
    name: 'METRICS_BIND',
    default: ':9464',
    roleDefaults: { uploader: ':9465' },
    roles: [...BOTH, 'warm'],
    description:
      'Admin address of each service: Prometheus `/metrics`, `/livez` and `/readyz`; `off` disables it. The defaults differ so that a proxy and an uploader on one host both start; give each further uploader on a host its own (or `off`). An address already in use stops the service (exit 2).',
  },
  {
    name: 'LOG_LEVEL',
    default: 'info',
    roles: ALL,
    description: '`fatal`, `error`, `warn`, `info`, `debug` (shows why each response was not cached), `trace` or `silent`.',
  },
] as const satisfies readonly Variable[];

export interface RuntimeSettings {
  shutdownTimeoutMs: number;
  /** METRICS_BIND: the admin address (/metrics, /livez, /readyz); undefined = off */
  metricsBind: BindAddress | undefined;
  logLevel: LogLevel;
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function readRuntime(r: Reader): RuntimeSettings {
  return {
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 0),
    metricsBind: r.bind('METRICS_BIND', { host: undefined, port: 9464 }, true),
    logLevel: r.oneOf('LOG_LEVEL', LOG_LEVELS, (value) => value.toLowerCase()),
  };
}
