import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BucketClient, cacheKeyOf, loadConfig, queuePrefix } from '@imgproxy-cache/shared';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { setupBucket } from '../apps/uploader/src/setup-bucket.js';
import { composeCommand, docker, engineAnswers, ensureImage, ensureThirdPartyImages, hostPort, projectContainers, run } from './support/docker.js';
import { ROOT } from './support/service.js';
import { waitFor } from './support/wait.js';

// The stack as users start it: the project's own docker-compose.yml and Dockerfile, unchanged, on
// a real engine (DOCKER_HOST honoured). Third-party images come from a registry where one answers;
// here, where none does, they are built locally under the names the files use (the base images by
// local-images.sh in CI, imgproxy and the S3 server from our stand-ins in support/containers).
// In CI always; elsewhere skipped with a warning when no engine answers.

const engine = await engineAnswers();
if (!engine && !process.env.CI) console.warn('container tests skipped: no Docker engine answers (start one, or set DOCKER_HOST)');

// Testcontainers' reaper is an image of its own that no registry gives here; the tests clean up.
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

const MINUTE = 60_000;
const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
/** the README's quick-start example: the image path it requests, and where it reads the object */
const example = {
  path: /curl -so cat\.png [^']*'[^']*' \\\n\s*'http:\/\/localhost:8080([^']+)'/.exec(readme)?.[1] ?? '',
  bucketUrl: /curl -sI "(http:\/\/localhost:9000\/[^"$]+)\$key"/.exec(readme)?.[1] ?? '',
};
const dotEnv = Object.fromEntries(
  readFileSync(`${ROOT}/.env.example`, 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
) as Record<string, string>;

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; body: Buffer }> {
  const res = await request(url, { headers, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, type: String(res.headers['content-type'] ?? ''), body };
}

/** Resolves once `url` answers 200 with exactly `bytes`, anonymously (pages load images this way). */
function landed(url: string, bytes: Buffer, timeoutMs = 60_000): Promise<true> {
  return waitFor(async () => (await get(url).catch(() => undefined))?.body.equals(bytes) === true || undefined, { timeoutMs, intervalMs: 250, what: url });
}

const newPaths = (tag: string, n: number) =>
  Array.from({ length: n }, (_, i) => `/unsafe/rs:fit:${100 + i}:${100 + i}/plain/https://example.com/${tag}-${i}.jpg@png`);

describe.runIf(engine || process.env.CI)('docker compose up --build, as users start it, with an override file laid over', () => {
  const project = `icc${randomUUID().slice(0, 6)}`;
  const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-compose-'));
  const envFile = join(dir, '.env');
  // what users lay over the file: settings of their own for some services (docker-compose 1.x then
  // reaches the services in another order than the file's)
  const override = join(dir, 'docker-compose.override.yml');
  let composeBin: string[] = [];
  const compose = (args: string[], timeoutMs = 5 * MINUTE) =>
    run(composeBin[0]!, [...composeBin.slice(1), '-p', project, '-f', 'docker-compose.yml', '-f', override, '--env-file', envFile, ...args], { timeoutMs });
  const logsOf = (container: string) => docker(['logs', container], { timeoutMs: 30_000 });
  const uploaders = async () => (await projectContainers(project)).filter((c) => c.service === 'uploader');
  /** every service up and healthy (s3-init done), `uploader` times */
  const healthy = (uploaderCount: number) =>
    waitFor(
      async () => {
        const containers = await projectContainers(project);
        const init = containers.find((c) => c.service === 's3-init');
        if (init?.status === 'exited' && init.exitCode !== 0) throw new Error(`s3-init failed:\n${await logsOf(init.name)}`);
        const running = containers.filter((c) => c.service !== 's3-init');
        const ok =
          init?.status === 'exited' &&
          running.every((c) => c.status === 'running' && c.health === 'healthy') &&
          running.filter((c) => c.service === 'uploader').length === uploaderCount &&
          ['redis', 'imgproxy', 's3', 'proxy', 'dashboard'].every((s) => running.some((c) => c.service === s));
        return ok ? containers : undefined;
      },
      { timeoutMs: 3 * MINUTE, intervalMs: 1000, what: 'every service to be healthy' },
    );

  beforeAll(async () => {
    composeBin = await composeCommand();
    await ensureThirdPartyImages();
    writeFileSync(envFile, readFileSync(`${ROOT}/.env.example`));
    writeFileSync(
      override,
      ['services:', '  s3-init:', '    environment:', '      LOG_LEVEL: debug', '  uploader:', '    environment:', '      UPLOAD_CONCURRENCY: "4"', ''].join(
        '\n',
      ),
    );
    // as on a fresh machine: our image is built by `up --build`, whichever service of ours compose
    // reaches first, never pulled (the build cache stays, so it is quick)
    await docker(['rmi', '--no-prune', 'imgproxy-cache:local']).catch(() => undefined);
    await compose(['up', '-d', '--build'], 15 * MINUTE);
  }, 20 * MINUTE);

  afterAll(async () => {
    await compose(['down', '-v', '--remove-orphans']).catch(() => undefined);
    // the build cache stays, so the next run builds quickly
    await docker(['rmi', '--no-prune', 'imgproxy-cache:local']).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 5 * MINUTE);

  it(
    'starts every service healthy; the README’s example is served as image/png and lands byte-exact at the bucket’s public URL',
    async () => {
      const containers = await healthy(1);
      expect(containers.map((c) => c.service).sort()).toEqual(['dashboard', 'imgproxy', 'proxy', 'redis', 's3', 's3-init', 'uploader']);
      // compose built the runtime stage (user node), not the Dockerfile's last, the all-in-one image
      expect((await docker(['image', 'inspect', '--format', '{{.Config.User}}', 'imgproxy-cache:local'])).trim()).toBe('node');
      expect(example.path).toMatch(/^\/unsafe\//);
      const served = await get(`http://localhost:8080${example.path}`);
      expect(served.status).toBe(200);
      expect(served.type).toBe('image/png');
      expect(served.body.subarray(1, 4).toString()).toBe('PNG');
      await landed(`${example.bucketUrl}${cacheKeyOf(example.path)}`, served.body);
      // nothing but the images is readable anonymously
      expect((await get(example.bucketUrl.replace(/\/processed\/$/, '/'))).status).toBe(403);
      // the services allocate with jemalloc (the image's LD_PRELOAD)
      for (const service of ['proxy', 'uploader']) {
        const container = containers.find((c) => c.service === service)!;
        // every node process in it (PID 1 is compose's init, the service its child)
        const maps = 'for p in /proc/[0-9]*; do [ "$(readlink $p/exe)" = /usr/local/bin/node ] && grep -c libjemalloc $p/maps; done; true';
        const counts = (await docker(['exec', container.name, 'sh', '-c', maps])).trim().split('\n');
        expect(counts.length).toBeGreaterThan(0);
        for (const count of counts) expect(Number(count)).toBeGreaterThan(0);
      }
    },
    5 * MINUTE,
  );

  it(
    '--scale uploader=3: 30 new images land, each uploaded once, by more than one uploader',
    async () => {
      await compose(['up', '-d', '--scale', 'uploader=3']);
      await healthy(3);
      const paths = newPaths('scaled', 30);
      const served = await Promise.all(paths.map((p) => get(`http://localhost:8080${p}`)));
      for (const s of served) expect(s.status).toBe(200);
      await Promise.all(paths.map((p, i) => landed(`${example.bucketUrl}${cacheKeyOf(p)}`, served[i]!.body)));
      const uploads = new Map<string, number>();
      let working = 0;
      for (const u of await uploaders()) {
        const lines = (await logsOf(u.name)).split('\n').filter((l) => l.includes('Uploaded to S3') && l.includes('scaled-'));
        if (lines.length > 0) working += 1;
        for (const l of lines) {
          const key = /key=processed\/([0-9a-f]{32})/.exec(l)?.[1] ?? '';
          uploads.set(key, (uploads.get(key) ?? 0) + 1);
        }
      }
      expect([...uploads.keys()].sort()).toEqual(paths.map((p) => cacheKeyOf(p)).sort());
      expect([...uploads.values()].every((n) => n === 1)).toBe(true);
      expect(working).toBeGreaterThanOrEqual(2);
    },
    5 * MINUTE,
  );

  it(
    '--profile observability: Prometheus scrapes the proxy and all three uploaders, with the alert rules loaded',
    async () => {
      // prom/prometheus where a registry answers; here, Debian's Prometheus in an image of that name
      const image = (parse(readFileSync(`${ROOT}/docker-compose.yml`, 'utf8')) as { services: Record<string, { image?: string }> }).services.prometheus!.image!;
      await ensureImage(image, { context: 'test/support/containers/prometheus' });
      await compose(['--profile', 'observability', 'up', '-d', '--no-deps', 'prometheus']);
      try {
        const api = 'http://127.0.0.1:9090/api/v1';
        const targets = await waitFor(
          async () => {
            const res = await get(`${api}/targets`).catch(() => undefined);
            if (res?.status !== 200) return undefined;
            const active = (JSON.parse(res.body.toString()) as { data: { activeTargets: { labels: { job: string }; health: string }[] } }).data.activeTargets;
            const up = (job: string) => active.filter((t) => t.labels.job === job && t.health === 'up').length;
            return up('imgproxy-cache-proxy') === 1 && up('imgproxy-cache-uploader') === 3 ? active : undefined;
          },
          { timeoutMs: 2 * MINUTE, intervalMs: 1000, what: 'Prometheus to scrape the proxy and three uploaders' },
        );
        expect(targets.length).toBe(4);
        const rules = JSON.parse((await get(`${api}/rules`)).body.toString()) as { data: { groups: { rules: { name: string }[] }[] } };
        expect(rules.data.groups.flatMap((g) => g.rules.map((r) => r.name))).toContain('ImgproxyCacheUploadsFailing');
      } finally {
        await compose(['--profile', 'observability', 'rm', '-sfv', 'prometheus']);
      }
    },
    10 * MINUTE,
  );

  it('serves the dashboard only with the credentials of .env', async () => {
    expect((await get('http://127.0.0.1:3000/')).status).toBe(401);
    const auth = `Basic ${Buffer.from(`${dotEnv.DASHBOARD_USER}:${dotEnv.DASHBOARD_PASSWORD}`).toString('base64')}`;
    expect((await get('http://127.0.0.1:3000/', { authorization: auth })).status).toBe(200);
    expect((await get('http://127.0.0.1:3000/', { authorization: `Basic ${Buffer.from('ops:wrong').toString('base64')}` })).status).toBe(401);
  });

  it(
    'loses nothing across a Redis restart while the uploaders are stopped: all 10 images land once they start',
    async () => {
      await compose(['stop', 'uploader']);
      const paths = newPaths('restart', 10);
      const served = await Promise.all(paths.map((p) => get(`http://localhost:8080${p}`)));
      for (const s of served) expect(s.status).toBe(200);
      const redis = (await projectContainers(project)).find((c) => c.service === 'redis')!.name;
      const waiting = 'bull:{imgproxy-cache-uploads}:imgproxy-cache-uploads:wait';
      await waitFor(async () => Number(await docker(['exec', redis, 'redis-cli', 'LLEN', waiting])) === 10, { what: '10 queued images', intervalMs: 250 });
      await compose(['restart', 'redis']);
      await compose(['start', 'uploader']);
      await healthy(3);
      await Promise.all(paths.map((p, i) => landed(`${example.bucketUrl}${cacheKeyOf(p)}`, served[i]!.body)));
    },
    5 * MINUTE,
  );

  it(
    'docker compose stop: every service exits 0, within its stop_grace_period (past it, Docker kills: 137)',
    async () => {
      await compose(['stop'], 3 * MINUTE);
      const containers = await projectContainers(project);
      expect(containers.length).toBe(9); // s3-init and three uploaders among them
      for (const c of containers) expect({ name: c.name, status: c.status, exitCode: c.exitCode }).toEqual({ name: c.name, status: 'exited', exitCode: 0 });
    },
    5 * MINUTE,
  );
});

describe.runIf(engine || process.env.CI)('the all-in-one image beside an S3 server alone', () => {
  const tag = 'imgproxy-cache:all-in-one-test';
  const credentials = { accessKeyId: dotEnv.AWS_ACCESS_KEY_ID!, secretAccessKey: dotEnv.AWS_SECRET_ACCESS_KEY! };
  const dataDir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-aio-'));
  const cleanup: (() => Promise<unknown>)[] = [];
  let s3Id = '';
  let aioId = '';
  const bucketUrl = async (key: string) => `http://127.0.0.1:${await hostPort(s3Id, 9000)}/aio-images/processed/${key}`;
  const proxyUrl = async (path: string) => `http://127.0.0.1:${await hostPort(aioId, 8080)}${path}`;

  beforeAll(async () => {
    const images = await ensureThirdPartyImages();
    await docker(['build', '-q', '--target', 'all-in-one', '-t', tag, '.'], { timeoutMs: 15 * MINUTE });
    cleanup.push(() => docker(['rmi', '--no-prune', tag]));
    const { GenericContainer, Network, Wait } = await import('testcontainers');
    const network = await new Network().start();
    cleanup.push(() => network.stop());
    const s3 = await new GenericContainer(images.s3)
      .withNetwork(network)
      .withNetworkAliases('s3')
      .withEnvironment({
        ROOT_ACCESS_KEY: credentials.accessKeyId,
        ROOT_SECRET_KEY: credentials.secretAccessKey,
        VGW_BACKEND: 'posix',
        VGW_BACKEND_ARG: '/data',
        VGW_PORT: ':9000',
        VGW_HEALTH: '/health',
      })
      .withExposedPorts(9000)
      .withWaitStrategy(Wait.forHttp('/health', 9000))
      .start();
    s3Id = s3.getId();
    cleanup.unshift(() => docker(['rm', '-f', '-v', s3Id]));
    const env = { S3_BUCKET: 'aio-images', S3_FOLDER: 'processed', S3_REGION: 'us-east-1', S3_FORCE_PATH_STYLE: 'true' };
    const config = loadConfig({ ...env, S3_ENDPOINT: `http://127.0.0.1:${s3.getMappedPort(9000)}` }, 'setup-bucket');
    const client = new BucketClient(config.s3, { credentials: async () => credentials });
    await setupBucket(client, { ...config.s3, waitMs: 10_000, say: () => undefined });
    client.close();
    // its Redis writes the queue's append-only file here, as in the /data volume
    chmodSync(dataDir, 0o777);
    const aio = await new GenericContainer(tag)
      .withNetwork(network)
      .withEnvironment({
        ...env,
        S3_ENDPOINT: 'http://s3:9000',
        AWS_ACCESS_KEY_ID: credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        UPLOAD_BACKOFF_MS: '200',
        UPLOAD_ATTEMPTS: '12',
      })
      .withBindMounts([{ source: dataDir, target: '/data' }])
      .withExposedPorts(8080)
      .withWaitStrategy(Wait.forAll([Wait.forLogMessage(/Proxy listening/), Wait.forLogMessage(/Uploader started/)]))
      .withStartupTimeout(2 * MINUTE)
      .start();
    aioId = aio.getId();
    cleanup.unshift(() => docker(['rm', '-f', '-v', aioId]));
  }, 20 * MINUTE);

  afterAll(async () => {
    for (const step of cleanup) await step().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }, 5 * MINUTE);

  it(
    'serves and stores an image on its own',
    async () => {
      const [path] = newPaths('aio', 1);
      const served = await get(await proxyUrl(path!));
      expect(served.status).toBe(200);
      expect(served.type).toBe('image/png');
      await landed(await bucketUrl(cacheKeyOf(path!)), served.body);
      // UPLOADER_IN_PROXY: the proxy and the uploader in start-all's own process, none of their own
      const processes = await docker(['top', aioId, '-eo', 'pid,args']);
      expect(processes).toMatch(/scripts\/service\.mjs all-in-one/);
      expect(processes).not.toMatch(/apps\/(proxy|uploader)\/dist/);
      // and its allocations go to jemalloc (LD_PRELOAD): a path that does not resolve only warns
      expect(await docker(['exec', aioId, 'grep', '-c', 'libjemalloc', '/proc/1/maps'])).not.toMatch(/^0/);
    },
    2 * MINUTE,
  );

  it(
    'keeps what it queued while S3 refused across docker stop (exit 0 on SIGTERM) and docker start, and stores it',
    async () => {
      await docker(['stop', s3Id]);
      const paths = newPaths('aio-kept', 5);
      const served: Awaited<ReturnType<typeof get>>[] = [];
      for (const p of paths) served.push(await get(await proxyUrl(p)));
      for (const s of served) expect(s.status).toBe(200);
      // each was queued: its upload was tried and failed (its job's attempts, as BullMQ keeps them in
      // the container's Redis; the log keeps one retry line per cause per 10 s)
      const queue = 'imgproxy-cache-uploads';
      const attempts = (p: string) =>
        docker(['exec', aioId, 'redis-cli', '-s', '/data/redis.sock', 'HGET', `${queuePrefix(queue)}:${queue}:${cacheKeyOf(p)}`, 'atm']);
      await waitFor(async () => (await Promise.all(paths.map(attempts))).every((atm) => Number(atm) >= 1), {
        timeoutMs: MINUTE,
        intervalMs: 500,
        what: 'every upload to be refused once',
      });
      await docker(['stop', '-t', '30', aioId]);
      const state = JSON.parse(await docker(['inspect', '--format', '{{json .State}}', aioId])) as { ExitCode: number; Status: string };
      expect(state).toMatchObject({ Status: 'exited', ExitCode: 0 });
      await docker(['start', aioId]);
      await docker(['start', s3Id]);
      await Promise.all(paths.map(async (p, i) => landed(await bucketUrl(cacheKeyOf(p)), served[i]!.body, 2 * MINUTE)));
    },
    5 * MINUTE,
  );
});
