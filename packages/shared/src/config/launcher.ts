import type { Reader } from './reader.js';
import type { Variable } from './variable.js';

// `npm start` (and the all-in-one image): the services together, with a Redis of its own unless
// REDIS_URL names one.

export const LAUNCHER_VARIABLES = [
  {
    name: 'DATA_DIR',
    default: './data',
    roles: ['npm start'],
    description:
      'Where `npm start` (and the all-in-one image, where it is `/data`) keeps the Redis it runs itself when `REDIS_URL` is not set: its append-only file (fsync every second) and its Unix socket (no TCP port). One `npm start` per directory.',
  },
  {
    name: 'UPLOADER_IN_PROXY',
    default: 'true',
    roles: ['npm start'],
    description:
      "`npm start` (and the all-in-one image) runs the uploader inside its own process, beside the proxy, instead of a process each: less memory and less CPU per image (bench/PROFILE.md), for one small machine. Uploads then share the proxy's event loop, so `UPLOAD_NICE` does not apply. `false` runs them as two processes, as it does by default when `PROXY_WORKERS` is above 1 (`true` with it is refused). The separate `proxy` and `uploader` services (compose, scaling out) are not affected.",
  },
] as const satisfies readonly Variable[];

export interface LauncherSettings {
  /** REDIS_URL was set (npm start runs a Redis of its own when it is not) */
  redisUrlSet: boolean;
  /** DATA_DIR: where npm start's own Redis keeps its files and socket */
  dataDir: string;
  /** UPLOADER_IN_PROXY as set; undefined: the launcher's default (one process, unless PROXY_WORKERS is above 1) */
  uploaderInProxy: boolean | undefined;
}

export function readLauncher(r: Reader): LauncherSettings {
  return {
    redisUrlSet: r.isSet('REDIS_URL'),
    dataDir: r.raw('DATA_DIR'),
    uploaderInProxy: r.isSet('UPLOADER_IN_PROXY') ? r.bool('UPLOADER_IN_PROXY') : undefined,
  };
}
