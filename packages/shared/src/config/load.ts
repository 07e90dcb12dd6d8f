import { DASHBOARD_VARIABLES, type DashboardSettings, readDashboard } from './dashboard.js';
import { LAUNCHER_VARIABLES, type LauncherSettings, readLauncher } from './launcher.js';
import { PROXY_VARIABLES, type ProxySettings, readProxy } from './proxy.js';
import { QUEUE_VARIABLES, type RedisSettings, readQueue, retryWindowMs } from './queue.js';
import { ConfigError, type Env, Reader } from './reader.js';
import { RUNTIME_VARIABLES, type RuntimeSettings, readRuntime } from './runtime.js';
import { readS3, S3_VARIABLES, type S3Config } from './s3.js';
import { readImgproxyBaseUrl, SOURCE_VARIABLES } from './source.js';
import { readUploader, UPLOADER_VARIABLES, type UploaderSettings } from './uploader.js';
import type { Role, Variable } from './variable.js';

// The only reader of process.env in the project: every variable is declared once, in its section,
// with its default; loadConfig() parses all of them and reports every bad one at once, each
// message naming the variable, so a misconfigured deployment fails at start with one readable
// list. Each role gets the part of the configuration it reads (its schema below).

/** Every variable, section by section (the README's table, in this order). */
export const VARIABLES = [
  ...S3_VARIABLES,
  ...SOURCE_VARIABLES,
  ...PROXY_VARIABLES,
  ...QUEUE_VARIABLES,
  ...UPLOADER_VARIABLES,
  ...DASHBOARD_VARIABLES,
  ...RUNTIME_VARIABLES,
  ...LAUNCHER_VARIABLES,
] as const satisfies readonly Variable[];

export type VariableName = (typeof VARIABLES)[number]['name'];

/** Every section, as loadConfig reads them. */
export interface Config extends RedisSettings, RuntimeSettings, LauncherSettings {
  s3: S3Config;
  proxy: ProxySettings;
  /** IMGPROXY_BASE_URL: prefix of relative sources ('' for none) */
  imgproxyBaseUrl: string;
  uploader: UploaderSettings;
  dashboard: DashboardSettings;
}

type Runtime = 'shutdownTimeoutMs' | 'metricsBind' | 'logLevel';
type Queue = 'redisUrl' | 'redisCluster' | 'payloadRedisUrl' | 'queue';

/** What each role reads: its part of the configuration. */
export interface RoleConfigs {
  proxy: Pick<Config, 's3' | 'proxy' | 'imgproxyBaseUrl' | Queue | Runtime>;
  uploader: Pick<Config, 's3' | 'imgproxyBaseUrl' | 'uploader' | Queue | Runtime>;
  dashboard: Pick<Config, 'dashboard' | 'redisUrl' | 'redisCluster' | 'queue' | Runtime> & { s3: Pick<S3Config, 'bucket'> };
  'npm start': Pick<Config, 'redisUrl' | 'redisUrlSet' | 'dataDir' | 'uploaderInProxy' | 'metricsBind'> & { proxy: Pick<ProxySettings, 'workers'> };
  purge: Pick<Config, 's3' | 'imgproxyBaseUrl' | Queue | 'logLevel'>;
  reindex: Pick<Config, 's3' | 'redisUrl' | 'redisCluster' | 'queue'>;
  'setup-bucket': Pick<Config, 's3'>;
  warm: Pick<Config, 's3' | 'metricsBind'> & { proxy: Pick<ProxySettings, 'bind' | 'cacheMaxBytes'> };
}

export type ProxyConfig = RoleConfigs['proxy'];
export type UploaderConfig = RoleConfigs['uploader'];
export type DashboardConfig = RoleConfigs['dashboard'];
export type LauncherConfig = RoleConfigs['npm start'];
export type PurgeConfig = RoleConfigs['purge'];
export type WarmConfig = RoleConfigs['warm'];

/** Parses and validates the environment for one role. Throws ConfigError listing every problem. */
export function loadConfig<R extends Role>(env: Env, role: R): RoleConfigs[R] {
  const r = new Reader(env, role, VARIABLES);
  const config: Config = {
    s3: readS3(r),
    imgproxyBaseUrl: readImgproxyBaseUrl(r),
    proxy: readProxy(r),
    ...readQueue(r),
    uploader: readUploader(r),
    dashboard: readDashboard(r),
    ...readRuntime(r),
    ...readLauncher(r),
  };
  for (const problem of acrossSections(config, role)) r.problem(problem);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/** The rules that tie one section to another. */
function acrossSections(config: Config, role: Role): string[] {
  const problems: string[] = [];
  const { proxy, queue, s3, uploader } = config;
  // The bytes must still be in Redis when the last retry runs, or that retry can only fail.
  const windowSec = retryWindowMs(queue.attempts, queue.backoffMs) / 1000;
  if (role === 'proxy' && windowSec >= queue.payloadTtlSec) {
    problems.push(
      `CACHE_PAYLOAD_TTL_SEC (${queue.payloadTtlSec}) must be longer than the retry window of ` +
        `UPLOAD_ATTEMPTS=${queue.attempts} and UPLOAD_BACKOFF_MS=${queue.backoffMs} (${Math.ceil(windowSec)} s)`,
    );
  }
  if (proxy.backlogMaxBytes / queue.shards < proxy.cacheMaxBytes) {
    problems.push(
      `CACHE_BACKLOG_MAX_BYTES (${proxy.backlogMaxBytes}) must be at least CACHE_MAX_BYTES (${proxy.cacheMaxBytes}) times QUEUE_SHARDS (${queue.shards}): each shard gets an even part`,
    );
  }
  if (role === 'proxy' && proxy.adminToken !== undefined && s3.bucket === '')
    problems.push('ADMIN_TOKEN (purge) needs S3_BUCKET: the bucket to remove images from');
  if (role === 'proxy' && proxy.readThrough && s3.bucket === '') problems.push('CACHE_READ_THROUGH=true needs S3_BUCKET: the bucket to read from');
  const beyond = uploader.shards?.filter((n) => n >= queue.shards) ?? [];
  if (role === 'uploader' && beyond.length > 0) {
    problems.push(`UPLOAD_SHARDS names shards ${beyond.join(', ')}, but QUEUE_SHARDS=${queue.shards} has shards 0 to ${queue.shards - 1}`);
  }
  if (role === 'npm start' && config.uploaderInProxy === true && proxy.workers > 1) {
    problems.push(`UPLOADER_IN_PROXY=true runs the proxy in one process: PROXY_WORKERS must be 1, got ${proxy.workers}`);
  }
  return problems;
}
