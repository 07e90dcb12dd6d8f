import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { VARIABLES } from '@imgproxy-cache/shared';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SERVICE_NODE_FLAGS } from '../apps/launcher/src/node-flags.js';
import { ROOT } from './support/service.js';

// The deployment files as files (compose.test.ts runs them on an engine): the compose file is
// parsed, validated and resolved (with the variables of .env.example) by a real compose
// implementation, every variable our services are given is one the config module knows (a typo
// would be silently ignored otherwise), every image is pinned, our image is built once from the
// runtime stage, and the compose file keeps the promises the README makes.

const haveCompose = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;
if (!haveCompose && !process.env.CI) console.warn('compose checks skipped: docker-compose missing (apt-get install -y docker-compose)');
const composeConfig = (...extra: string[]) =>
  execFileSync('docker-compose', ['-f', 'docker-compose.yml', '--env-file', '.env.example', 'config', ...extra], { cwd: ROOT, encoding: 'utf8' });

interface Service {
  image?: string;
  build?: { context: string; target?: string } | string;
  pull_policy?: string;
  command?: string[];
  environment?: Record<string, string>;
  init?: boolean;
  stop_grace_period?: string;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  cpu_shares?: number;
}

/** The compose file as written (for what it must not resolve: secrets). */
const written = parse(readFileSync(`${ROOT}/docker-compose.yml`, 'utf8'), { merge: true }) as { services: Record<string, Service> };
/** The compose file as docker-compose resolves it, or as written where docker-compose is missing (those tests are skipped then). */
const compose = (haveCompose ? parse(composeConfig()) : written) as { services: Record<string, Service> };
const dockerfile = readFileSync(`${ROOT}/Dockerfile`, 'utf8');
const known = new Set<string>([...VARIABLES.map((v) => v.name), 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']);
const OUR_IMAGE = 'imgproxy-cache:local';
const ours = Object.entries(compose.services).filter(([, s]) => s.image === OUR_IMAGE);

const pinned = (image: string) => {
  const tag = image.split(':').at(-1) ?? '';
  return image.includes(':') && tag !== 'latest' && /\d/.test(tag);
};

describe.runIf(haveCompose || process.env.CI)('docker-compose.yml', () => {
  it('is a valid compose file with the variables of .env.example', () => {
    expect(() => composeConfig('-q')).not.toThrow();
  });

  it('runs proxy, uploader, dashboard and s3-init from our image, and redis, imgproxy, s3 beside them', () => {
    expect(ours.map(([name]) => name).sort()).toEqual(['dashboard', 'proxy', 's3-init', 'uploader']);
    expect(Object.keys(compose.services).sort()).toEqual(['dashboard', 'grafana', 'imgproxy', 'prometheus', 'proxy', 'redis', 's3', 's3-init', 'uploader']);
    expect(compose.services['s3-init']!.command).toEqual(['setup-bucket']);
    expect(compose.services.proxy!.command).toEqual(['proxy']);
    expect(compose.services.uploader!.command).toEqual(['uploader']);
    expect(compose.services.dashboard!.command).toEqual(['dashboard']);
  });

  it('the observability profile: Prometheus and Grafana only on request, on loopback, with the rules, the scrape config and the dashboard they need', () => {
    for (const name of ['prometheus', 'grafana']) {
      const service = written.services[name] as Service & { profiles?: string[]; ports?: string[]; volumes?: string[] };
      expect(service.profiles, name).toEqual(['observability']);
      for (const port of service.ports ?? []) expect(port, name).toMatch(/^127\.0\.0\.1:/);
      for (const volume of service.volumes ?? []) {
        const [from] = volume.split(':');
        if (from!.startsWith('./')) expect(existsSync(`${ROOT}/${from}`), `${name}: ${from}`).toBe(true);
      }
    }
    // without the profile, `up` starts neither
    const started = execFileSync('docker-compose', ['-f', 'docker-compose.yml', '--env-file', '.env.example', 'config', '--services'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(started).toContain('prometheus'); // listed by config, started only with --profile
    expect(() =>
      execFileSync('docker-compose', ['-f', 'docker-compose.yml', '--env-file', '.env.example', '--profile', 'observability', 'config', '-q'], { cwd: ROOT }),
    ).not.toThrow();
    // the scrape jobs are named as the alerts expect, and the uploaders are found by DNS (scaled ones too)
    const scrape = parse(readFileSync(`${ROOT}/deploy/prometheus/prometheus.yml`, 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs?: { targets: string[] }[]; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    expect(scrape.rule_files).toEqual(['alerts.yml']);
    expect(scrape.scrape_configs.map((c) => c.job_name)).toEqual(['imgproxy-cache-proxy', 'imgproxy-cache-uploader']);
    expect(scrape.scrape_configs[0]!.static_configs![0]!.targets).toEqual([`proxy:${compose.services.proxy!.environment!.METRICS_BIND!.replace(':', '')}`]);
    expect(scrape.scrape_configs[1]!.dns_sd_configs![0]).toMatchObject({
      names: ['uploader'],
      port: Number(compose.services.uploader!.environment!.METRICS_BIND!.replace(':', '')),
    });
  });

  it('gives our services only variables the config module knows', () => {
    for (const [name, service] of ours) {
      for (const key of Object.keys(service.environment ?? {})) expect(known.has(key), `${name}: ${key}`).toBe(true);
    }
  });

  it('names the build of our image (the runtime stage: the last is the all-in-one image) in every service that runs it, which never pulls it', () => {
    // docker-compose 1.x orders services anew under an override file: any of them may come first
    expect(ours.map(([name]) => name).sort()).toEqual(['dashboard', 'proxy', 's3-init', 'uploader']);
    for (const [name, service] of ours) {
      expect(service.build, name).toMatchObject({ target: 'runtime' });
      expect(service.pull_policy, name).toBe('build');
    }
    expect(dockerfile).toMatch(/^FROM \S+ AS runtime$/m);
  });

  it('pins every image', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (service.image === OUR_IMAGE) continue;
      expect(pinned(service.image ?? ''), `${name}: ${service.image}`).toBe(true);
    }
  });

  it('has healthchecks, init, a grace period longer than the shutdown timeout, and waits on health', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (name === 's3-init') continue; // runs once and exits
      expect(service.healthcheck?.test, name).toBeDefined();
    }
    for (const [name, service] of ours) {
      expect(service.init, name).toBe(true);
      const graceMs = Number(/^(\d+)s$/.exec(service.stop_grace_period ?? '')?.[1]) * 1000;
      expect(graceMs, name).toBeGreaterThan(Number(service.environment?.SHUTDOWN_TIMEOUT_MS));
      for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(['service_healthy', 'service_completed_successfully'], `${name} → ${dep}`).toContain(condition);
      }
    }
    expect(compose.services.proxy!.healthcheck!.test.join(' ')).toMatch(/readyz/);
    expect(compose.services.uploader!.healthcheck!.test.join(' ')).toMatch(/readyz/);
  });

  it('gives the uploaders less CPU weight than the proxy and imgproxy', () => {
    const weight = (s: Service) => s.cpu_shares ?? 1024;
    expect(weight(compose.services.uploader!)).toBeLessThan(weight(compose.services.proxy!));
    expect(weight(compose.services.uploader!)).toBeLessThan(weight(compose.services.imgproxy!));
  });

  it('runs the queue’s Redis with noeviction and an append-only file on a volume', () => {
    const resolved = compose as typeof compose & { volumes: Record<string, unknown> };
    const redis = compose.services.redis as Service & { volumes: string[] };
    expect(redis.command!.join(' ')).toMatch(/--maxmemory-policy noeviction/);
    expect(redis.command!.join(' ')).toMatch(/--appendonly yes/);
    const [volume] = redis.volumes.find((v) => /^[\w-]+:\/data(:rw)?$/.test(v))?.split(':') ?? [];
    expect(Object.keys(resolved.volumes)).toContain(volume);
  });
});

describe('docker-compose.yml as written', () => {
  it('bakes in no secrets: credentials come from .env', () => {
    for (const [name, service] of Object.entries(written.services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (/SECRET|PASSWORD|_KEY$|_KEY_ID$|SALT/.test(key)) expect(String(value), `${name}: ${key}`).toMatch(/^\$\{/);
      }
    }
  });
});

describe('Dockerfile', () => {
  it('builds with the classic builder and BuildKit alike: no syntax directive (BuildKit would pull its frontend image)', () => {
    expect(dockerfile).not.toMatch(/^# *syntax=/m);
  });

  it('runs the imgproxy of the compose file in the all-in-one image: a 4.x from 4.0.6 on (no year-long Cache-Control on errors)', () => {
    const arg = /^ARG IMGPROXY_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(arg).toBe(written.services.imgproxy!.image);
    const [, minor, patch] = /^ghcr\.io\/imgproxy\/imgproxy:v4\.(\d+)\.(\d+)$/.exec(arg ?? '') ?? [];
    expect(Number(minor) > 0 || Number(patch) >= 6, String(arg)).toBe(true);
  });

  it('pins its base images', () => {
    const args = Object.fromEntries([...dockerfile.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!.replace(/^\$\{(\w+)\}$/, (_, name: string) => args[name] ?? name));
    expect(froms.length).toBeGreaterThanOrEqual(3);
    for (const image of froms) expect(pinned(image), image).toBe(true);
    expect(args.NODE_IMAGE).toMatch(/^node:24\.[\d.]+-\w+-slim$/);
  });

  it('sets only variables the config module knows (or NODE_ENV), runs as non-root, and runs node itself', () => {
    for (const m of dockerfile.matchAll(/^ENV (\w+)=/gm)) expect(known.has(m[1]!) || m[1] === 'NODE_ENV', m[1]).toBe(true);
    expect(dockerfile).toMatch(/^USER node$/m);
    // with the services' Node flags (apps/launcher/src/node-flags.ts): they can only be given at start
    const entrypoint = `ENTRYPOINT ${JSON.stringify(['node', ...SERVICE_NODE_FLAGS, 'scripts/service.mjs']).replaceAll(',', ', ')}`;
    expect(dockerfile.split('\n').filter((line) => line.startsWith('ENTRYPOINT'))).toEqual([entrypoint, entrypoint]);
    expect(dockerfile).toMatch(/^COPY --from=build \/app\/apps\/launcher\/dist apps\/launcher\/dist$/m);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    expect(dockerfile).toMatch(/^FROM \$\{IMGPROXY_IMAGE\} AS all-in-one$/m);
  });

  it("runs the services with their Node flags: npm start's children and the package scripts too", () => {
    const scripts = (JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { scripts: Record<string, string> }).scripts;
    for (const service of ['proxy', 'uploader']) expect(scripts[`start:${service}`]).toBe(`node ${SERVICE_NODE_FLAGS.join(' ')} apps/${service}/dist/index.js`);
    expect(scripts.start).toBe(`node ${SERVICE_NODE_FLAGS.join(' ')} apps/launcher/dist/index.js`);
    // npm start's children: services.test.ts reads their command lines
  });

  it('the all-in-one image runs a Redis of its own, its files in the /data volume', () => {
    const allInOne = dockerfile.slice(dockerfile.indexOf('AS all-in-one'));
    expect(allInOne).toMatch(/apt-get install -y --no-install-recommends redis-server/);
    expect(allInOne).toMatch(/^ENV .*DATA_DIR=\/data/m);
    expect(allInOne).toMatch(/^VOLUME \/data$/m);
    expect(allInOne).toMatch(/^USER imgproxy-cache$/m);
    expect(allInOne).toMatch(/^CMD \["all-in-one"\]$/m);
    // one Node process for the proxy and the uploader there (apps/launcher/src/in-process.ts)
    expect(allInOne).toMatch(/^ENV .*UPLOADER_IN_PROXY=true/m);
    expect(dockerfile).toMatch(/^COPY scripts\/service\.mjs scripts\/start-all\.mjs scripts\/$/m);
  });
});
