import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseBind, type Role, retryWindowMs, VARIABLES } from './index.js';

const problemsOf = (env: Record<string, string>, role: Role = 'proxy'): string[] => {
  try {
    loadConfig(env, role);
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
};

describe('loadConfig', () => {
  it('keeps the original tool’s defaults', () => {
    const config = loadConfig({ S3_BUCKET: 'images' }, 'uploader');
    expect(config.s3).toMatchObject({
      bucket: 'images',
      folder: '',
      endpoint: 'https://fly.storage.tigris.dev',
      region: 'auto',
      forcePathStyle: true,
      checksumMode: 'WHEN_REQUIRED',
    });
    const { proxy } = loadConfig({}, 'proxy');
    expect(proxy.bind).toEqual({ host: undefined, port: 8080 });
    expect(proxy.imgproxyUrl.href).toBe('http://127.0.0.1:8081/');
    expect(proxy.healthCheckTimeoutSec).toBe(30);
    expect(config.redisUrl).toBe('redis://127.0.0.1:6379');
  });

  it('takes a path prefix from IMGPROXY_URL', () => {
    expect(loadConfig({ IMGPROXY_URL: 'http://imgproxy:8080/prefix/' }, 'proxy').proxy.imgproxyBasePath).toBe('/prefix');
    expect(loadConfig({}, 'proxy').proxy.imgproxyBasePath).toBe('');
  });

  it('takes an ADMIN_TOKEN only of the characters a Bearer token may hold', () => {
    expect(problemsOf({ ADMIN_TOKEN: 'abc-DEF_1.2~3+4/5==', S3_BUCKET: 'b' })).toEqual([]);
    expect(problemsOf({ ADMIN_TOKEN: 'has space!', S3_BUCKET: 'b' })).toEqual([
      'ADMIN_TOKEN may hold only letters, digits and -._~+/ (and = at the end), as a Bearer token does',
    ]);
  });

  it('takes a storage class by name, and refuses the archive classes whose objects cannot be read', () => {
    expect(loadConfig({ S3_BUCKET: 'b', S3_STORAGE_CLASS: 'STANDARD_IA' }, 'uploader').s3.storageClass).toBe('STANDARD_IA');
    expect(loadConfig({ S3_BUCKET: 'b' }, 'uploader').s3.storageClass).toBe('');
    expect(problemsOf({ S3_BUCKET: 'b', S3_STORAGE_CLASS: 'GLACIER' }, 'uploader')).toEqual([
      'S3_STORAGE_CLASS=GLACIER is refused: its objects cannot be read without a restore, and pages read images from the bucket',
    ]);
    expect(problemsOf({ S3_BUCKET: 'b', S3_STORAGE_CLASS: 'deep_archive' }, 'uploader')).toHaveLength(1);
    expect(problemsOf({ S3_BUCKET: 'b', S3_STORAGE_CLASS: 'STANDARD\r\nx-evil: 1' }, 'uploader')).toEqual([
      'S3_STORAGE_CLASS must be a storage class name (STANDARD_IA, ...), got "STANDARD\r\nx-evil: 1"',
    ]);
  });

  it('requires S3_BUCKET for the uploader only', () => {
    expect(problemsOf({}, 'uploader')).toEqual(['S3_BUCKET is required']);
    expect(problemsOf({}, 'proxy')).toEqual([]);
  });

  it('reports every bad variable at once, each by name', () => {
    const problems = problemsOf(
      {
        S3_BUCKET: 'b',
        IMGPROXY_BIND: 'nonsense',
        IMGPROXY_URL: 'ftp://x',
        REDIS_URL: 'http://x',
        HEALTH_CHECK_TIMEOUT_IN_SEC: '-1',
        CACHE_MAX_BYTES: '10MB',
        UPLOAD_ATTEMPTS: '0',
        S3_FORCE_PATH_STYLE: 'maybe',
        S3_CHECKSUM_MODE: 'ALWAYS',
        LOG_LEVEL: 'loud',
        QUEUE_NAME: 'a b',
      },
      'uploader',
    );
    for (const name of [
      'IMGPROXY_BIND',
      'IMGPROXY_URL',
      'REDIS_URL',
      'HEALTH_CHECK_TIMEOUT_IN_SEC',
      'CACHE_MAX_BYTES',
      'UPLOAD_ATTEMPTS',
      'S3_FORCE_PATH_STYLE',
      'S3_CHECKSUM_MODE',
      'LOG_LEVEL',
      'QUEUE_NAME',
    ]) {
      expect(
        problems.some((p) => p.startsWith(name)),
        name,
      ).toBe(true);
    }
  });

  it('refuses, in the proxy (which sets both on the job), a payload TTL shorter than the retry window', () => {
    expect(retryWindowMs(10, 1000)).toBe(511_000);
    const tooShort = { UPLOAD_ATTEMPTS: '12', UPLOAD_BACKOFF_MS: '60000', CACHE_PAYLOAD_TTL_SEC: '3600', S3_BUCKET: 'b' };
    const problems = problemsOf(tooShort, 'proxy');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^CACHE_PAYLOAD_TTL_SEC \(3600\) must be longer than the retry window/);
    expect(problemsOf(tooShort, 'uploader')).toEqual([]);
    expect(problemsOf({ UPLOAD_ATTEMPTS: '3', UPLOAD_BACKOFF_MS: '1000', CACHE_PAYLOAD_TTL_SEC: '60' })).toEqual([]);
  });

  it('accepts booleans and modes in any case', () => {
    const config = loadConfig({ S3_FORCE_PATH_STYLE: 'FALSE', S3_CHECKSUM_MODE: 'when_supported', LOG_LEVEL: 'DEBUG' }, 'proxy');
    expect(config.s3.forcePathStyle).toBe(false);
    expect(config.s3.checksumMode).toBe('WHEN_SUPPORTED');
    expect(config.logLevel).toBe('debug');
  });

  it('gives proxy and uploader different admin ports by default, so that both run on one host', () => {
    expect(loadConfig({}, 'proxy').metricsBind).toEqual({ host: undefined, port: 9464 });
    expect(loadConfig({ S3_BUCKET: 'b' }, 'uploader').metricsBind).toEqual({ host: undefined, port: 9465 });
    expect(loadConfig({ S3_BUCKET: 'b', METRICS_BIND: ':9470' }, 'uploader').metricsBind).toEqual({ host: undefined, port: 9470 });
  });

  it('declares every variable once', () => {
    const names = VARIABLES.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('dashboard access', () => {
  it('refuses a non-loopback address without credentials', () => {
    expect(problemsOf({ DASHBOARD_BIND: '0.0.0.0:3000' }, 'dashboard')).toEqual([
      'DASHBOARD_USER and DASHBOARD_PASSWORD are required when DASHBOARD_BIND (0.0.0.0:3000) is not a loopback address',
    ]);
    expect(problemsOf({ DASHBOARD_BIND: ':3000' }, 'dashboard')).toHaveLength(1);
  });

  it('allows loopback without credentials, and anything with both', () => {
    expect(problemsOf({}, 'dashboard')).toEqual([]);
    expect(problemsOf({ DASHBOARD_BIND: '[::1]:3000' }, 'dashboard')).toEqual([]);
    expect(problemsOf({ DASHBOARD_BIND: ':3000', DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 's3cret' }, 'dashboard')).toEqual([]);
  });

  it('wants user and password together', () => {
    expect(problemsOf({ DASHBOARD_USER: 'ops' }, 'dashboard')).toEqual(['DASHBOARD_USER and DASHBOARD_PASSWORD must be set together']);
  });
});

describe('parseBind', () => {
  it.each([
    [':8080', { host: undefined, port: 8080 }],
    ['0.0.0.0:80', { host: '0.0.0.0', port: 80 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:9000', { host: '::1', port: 9000 }],
  ])('%s', (value, expected) => expect(parseBind(value)).toEqual(expected));

  it.each(['8080', 'host', ':99999', 'a:b', ''])('rejects %j', (value) => expect(parseBind(value)).toBeUndefined());
});
