#!/usr/bin/env node
// `npm run bench`: imgproxy-cache beside nginx proxy_pass, on this machine, with everything
// sharing its cores as in a small deployment. Not part of `npm test`: speed is measured here,
// never asserted by a test. Writes bench/RESULTS.md.
//
//   upstream   nginx serving one ~30 KB PNG for every path (a Node server when nginx is missing),
//              standing in for an imgproxy that answers instantly
//   reference  nginx, one worker, proxy_pass to the upstream with keep-alive
//   ours       the built proxy (child process) + one uploader + redis-server + s3rver
//   load       wrk (Debian's) when installed, else autocannon; 32 connections; runs interleaved
//
// BENCH_SECONDS (default 10) and BENCH_ROUNDS (default 2) size the runs.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { makePngOfSize } from '../test/support/png.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = 32;
const work = mkdtempSync(join(tmpdir(), 'imgproxy-cache-bench-'));
const children = [];
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const NGINX = have('nginx') ? 'nginx' : have('/usr/sbin/nginx') ? '/usr/sbin/nginx' : undefined;
const WRK = have('wrk') ? 'wrk' : undefined;

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Children write to files, never to pipes: a pipe nobody reads while wrk runs would fill up and
// stall the process writing to it.
function start(command, args, env = {}, name = command) {
  const log = join(work, `child-${children.length}.log`);
  const fd = openSync(log, 'w');
  // Not detached: a new session would also be a scheduling group of its own (autogroup), where
  // the uploader's lower priority no longer counts against the proxy's.
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.output = () => readFileSync(log, 'utf8');
  child.label = name;
  children.push(child);
  return child;
}

function run(command, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('error', reject);
    child.on('exit', () => resolve(out));
  });
}

async function until(check, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const httpOk = (url) =>
  fetch(url).then(
    (r) => r.ok,
    () => false,
  );

/** CPU seconds used so far by a process and its children (nginx's worker, say). */
function cpuSeconds(pid) {
  const ticks = (p) => {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      return Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      return 0;
    }
  };
  let total = ticks(pid);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === pid) total += ticks(entry);
    } catch {}
  }
  return total / 100; // USER_HZ
}

/** CPU seconds of every component (and wrk) over `work()`, as a share of one core. */
async function withCpuShares(seconds, work) {
  const before = new Map(children.map((c) => [c.label, cpuSeconds(c.pid)]));
  const result = await work();
  const shares = {};
  for (const c of children) {
    if (c.exitCode !== null) continue;
    const used = cpuSeconds(c.pid) - (before.get(c.label) ?? 0);
    shares[c.label] = (shares[c.label] ?? 0) + used / seconds;
  }
  return { ...result, cpu: shares };
}

/** Resident memory of a process, and of its children too with `withChildren` (cluster workers). */
function rssMiB(pid, withChildren = false) {
  const rss = (p) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1]) / 1024;
  let total = rss(pid);
  if (withChildren) {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid) total += rss(entry);
      } catch {}
    }
  }
  return total;
}

// --- the pieces ------------------------------------------------------------------------------

const image = makePngOfSize('bench', 30 * 1024);
mkdirSync(join(work, 'www'), { recursive: true });
writeFileSync(join(work, 'www', 'image.png'), image);
chmodSync(work, 0o755); // nginx workers run as nobody when started by root

/** One nginx with one worker, `http` holding the given upstream/server blocks; resolves its URL. */
async function startNginx(name, port, http) {
  const conf = join(work, `${name}.conf`);
  writeFileSync(
    conf,
    `worker_processes 1; daemon off; pid ${work}/${name}.pid; error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
${http}
}
`,
  );
  start(NGINX, ['-c', conf, '-p', work], {}, name === 'upstream' ? 'upstream' : 'nginx');
  const url = `http://127.0.0.1:${port}`;
  await until(() => httpOk(`${url}/health`), name);
  return url;
}

async function startUpstream() {
  const port = await freePort();
  if (NGINX) {
    return startNginx(
      'upstream',
      port,
      `  server {
    listen 127.0.0.1:${port};
    location = /health { default_type text/plain; return 200 "imgproxy is running"; }
    location / {
      root ${work}/www; default_type image/png;
      add_header Cache-Control "max-age=31536000, public";
      rewrite ^ /image.png break;
    }
  }`,
    );
  }
  start(
    process.execPath,
    [
      '-e',
      `
    const http = require('node:http'); const fs = require('node:fs');
    const image = fs.readFileSync(${JSON.stringify(join(work, 'www', 'image.png'))});
    http.createServer((req, res) => {
      if (req.url === '/health') return res.end('imgproxy is running');
      res.writeHead(200, { 'content-type': 'image/png', 'cache-control': 'max-age=31536000, public', 'content-length': image.length });
      res.end(image);
    }).listen(${port}, '127.0.0.1');`,
    ],
    {},
    'upstream',
  );
  await until(() => httpOk(`http://127.0.0.1:${port}/health`), 'the upstream');
  return `http://127.0.0.1:${port}`;
}

async function startReference(upstream) {
  const port = await freePort();
  return startNginx(
    'reference',
    port,
    `  upstream imgproxy { server ${upstream.replace('http://', '')}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://imgproxy; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; }
  }`,
  );
}

async function startRedis() {
  const port = await freePort();
  start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'], {}, 'redis');
  const url = `redis://127.0.0.1:${port}`;
  await until(async () => {
    const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } finally {
      r.disconnect();
    }
  }, 'redis-server');
  return url;
}

async function startS3() {
  const child = start(process.execPath, ['test/support/s3rver-child.mjs', '0', join(work, 's3')], {}, 's3rver');
  let port;
  await until(() => {
    const line = child.output().split('\n')[0];
    if (line?.startsWith('{')) port = JSON.parse(line).port;
    return port;
  }, 's3rver');
  const endpoint = `http://127.0.0.1:${port}`;
  const client = s3Client(endpoint);
  await client.send(new CreateBucketCommand({ Bucket: 'bench' }));
  return { endpoint, client };
}

function s3Client(endpoint) {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

// --- load ------------------------------------------------------------------------------------

async function load(baseUrl, unique) {
  const runId = randomUUID().slice(0, 8);
  if (WRK) {
    const out = await run(WRK, ['-t2', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', '-s', 'bench/wrk-report.lua', baseUrl], {
      UNIQUE: unique ? '1' : '0',
      RUN_ID: runId,
    });
    const line = out.split('\n').find((l) => l.startsWith('{'));
    if (!line) throw new Error(`wrk failed: ${out}`);
    const r = JSON.parse(line);
    return { rps: r.requests / (r.duration_us / 1e6), p50: r.p50 / 1000, p99: r.p99 / 1000, errors: r.errors + r.non2xx };
  }
  const { default: autocannon } = await import('autocannon');
  let n = 0;
  const result = await autocannon({
    url: baseUrl,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [
      {
        setupRequest: (req) => ({ ...req, path: unique ? `/bench/rs:fit:${n}/plain/${runId}-${n++}.jpg@png` : '/bench/rs:fit:300:300/plain/repeated.jpg@png' }),
      },
    ],
  });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

// --- uploader throughput ---------------------------------------------------------------------

async function uploaderThroughput(redisUrl, s3, jobs = 2000, concurrency = 16) {
  const bytes = Array.from({ length: 16 }, (_, i) => makePngOfSize(`up-${i}`, 30 * 1024));
  // s3rver (and the SDK) run far slower until warm: warm them up first, outside the timing, as
  // the loop will run
  let warm = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (warm < 1000) {
        const i = warm++;
        await s3.client.send(new PutObjectCommand({ Bucket: 'bench', Key: `warm/${i % 16}`, Body: bytes[i % 16], ContentType: 'image/png' }));
      }
    }),
  );
  // the plain loop: PutObject calls with `concurrency` in flight, same server, same sizes, new keys
  // as the uploader writes (s3rver overwrites an existing object about twice as fast as it creates one)
  const loopRun = randomUUID().slice(0, 8);
  let next = 0;
  const s3rver = children.find((c) => c.label === 's3rver');
  const redisChild = children.find((c) => c.label === 'redis');
  const loopCpu0 = { self: process.cpuUsage(), s3rver: cpuSeconds(s3rver.pid) };
  const loopStart = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs) {
        const i = next++;
        const body = bytes[i % bytes.length];
        await s3.client.send(
          new PutObjectCommand({
            Bucket: 'bench',
            Key: `loop/${loopRun}/${i}`,
            Body: body,
            ContentType: 'image/png',
            ContentMD5: createHash('md5').update(body).digest('base64'),
          }),
        );
      }
    }),
  );
  const loopSeconds = Number(process.hrtime.bigint() - loopStart) / 1e9;
  const selfCpu = process.cpuUsage(loopCpu0.self);
  const loopCpu = { loop: (selfCpu.user + selfCpu.system) / 1e6 / loopSeconds, s3rver: (cpuSeconds(s3rver.pid) - loopCpu0.s3rver) / loopSeconds };

  // the queue: fill it through the proxy's own enqueuer (onto the intake), then time one uploader
  // turning it into jobs and draining them
  const queueName = `bench-${randomUUID().slice(0, 8)}`;
  const shared = await import('../packages/shared/dist/index.js');
  const { RedisEnqueuer } = await import('../apps/proxy/dist/enqueue.js');
  const config = shared.loadConfig(
    { REDIS_URL: redisUrl, QUEUE_NAME: queueName, CACHE_BACKLOG_MAX_BYTES: String(1 << 30), ENQUEUE_TIMEOUT_MS: '10000' },
    'proxy',
  );
  const redis = shared.createProducerRedis(redisUrl);
  await until(() => redis.status === 'ready', 'redis');
  const enqueuer = new RedisEnqueuer(redis, redis, config, shared.createLogger('bench', 'silent'));
  for (let i = 0; i < jobs; i++) {
    const body = bytes[i % bytes.length];
    const path = `/up/${queueName}/${i}.png`;
    const outcome = await enqueuer.enqueue({
      bytes: body,
      data: {
        cacheKey: shared.cacheKeyOf(path),
        path,
        contentType: 'image/png',
        cacheControl: 'max-age=60',
        contentDisposition: null,
        size: body.length,
        crc32: shared.crc32Of(body),
        receivedAt: Date.now(),
      },
    });
    if (outcome !== 'queued') throw new Error(`enqueue: ${outcome}`);
  }
  await enqueuer.close();
  redis.disconnect();

  const queueRedis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection: queueRedis, prefix: 'bull' });
  const uploader = start(
    process.execPath,
    [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), 'apps/uploader/dist/index.js'],
    {
      REDIS_URL: redisUrl,
      QUEUE_NAME: queueName,
      S3_BUCKET: 'bench',
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      UPLOAD_CONCURRENCY: String(concurrency),
      METRICS_BIND: 'off',
      LOG_LEVEL: 'warn',
      UPLOAD_NICE: '0', // compared with a loop at normal priority, on an otherwise idle machine
    },
    'uploader (throughput)',
  );
  // the images wait on the intake; the uploader makes their jobs and uploads them
  const intake = new shared.Intake(queueRedis, shared.redisKeys(queueName));
  await until(async () => (await intake.size()) < jobs, 'the uploader to start', 30_000);
  const queueCpu0 = { uploader: cpuSeconds(uploader.pid), s3rver: cpuSeconds(s3rver.pid), redis: cpuSeconds(redisChild.pid) };
  const queueStart = process.hrtime.bigint();
  await until(
    async () => {
      const c = await queue.getJobCounts('waiting', 'active', 'delayed');
      return c.waiting + c.active + c.delayed === 0 && (await intake.size()) === 0;
    },
    'the queue to drain',
    600_000,
  );
  const queueSeconds = Number(process.hrtime.bigint() - queueStart) / 1e9;
  const queueCpu = Object.fromEntries(
    Object.entries({ uploader, s3rver, redis: redisChild }).map(([k, c]) => [k, (cpuSeconds(c.pid) - queueCpu0[k]) / queueSeconds]),
  );
  const failed = (await queue.getJobCounts('failed')).failed;
  uploader.kill('SIGTERM');
  await until(() => uploader.exitCode !== null, 'the uploader to stop', 30_000);
  await queue.close();
  queueRedis.disconnect();
  return { jobs, concurrency, loopRate: jobs / loopSeconds, queueRate: jobs / queueSeconds, failed, loopCpu, queueCpu };
}

// --- main ------------------------------------------------------------------------------------

/** The uploader measurement twice, loop and queue alternating, each rate the median (the mean of two). */
async function uploaderRounds(redisUrl, s3, rounds = 2) {
  const all = [];
  for (let i = 0; i < rounds; i++) {
    const r = await uploaderThroughput(redisUrl, s3);
    console.log(
      `uploads, round ${i + 1}: queue ${r.queueRate.toFixed(0)}/s (cpu ${cpuText(r.queueCpu)}) vs PutObject loop ${r.loopRate.toFixed(0)}/s (cpu ${cpuText(r.loopCpu)})`,
    );
    all.push(r);
  }
  const mid = (xs) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const m = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
  };
  return {
    ...all[0],
    rounds,
    queueRate: mid(all.map((r) => r.queueRate)),
    loopRate: mid(all.map((r) => r.loopRate)),
    failed: all.reduce((a, r) => a + r.failed, 0),
  };
}

const cpuText = (shares) =>
  Object.entries(shares)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');

/** BENCH_ONLY=uploads: only the uploader against the PutObject loop, for tuning the uploader. */
async function uploadsOnly() {
  const redisUrl = await startRedis();
  const s3 = await startS3();
  const uploads = await uploaderRounds(redisUrl, s3);
  console.log(
    `uploads: queue ${uploads.queueRate.toFixed(0)}/s vs PutObject loop ${uploads.loopRate.toFixed(0)}/s: ${(uploads.queueRate / uploads.loopRate).toFixed(2)}×, failed ${uploads.failed}`,
  );
}

async function main() {
  if (process.env.BENCH_ONLY === 'uploads') return uploadsOnly();
  if (!NGINX) console.warn('nginx is not installed (apt-get install -y nginx): no reference to compare with; the upstream is a Node server');
  console.log(`load generator: ${WRK ? 'wrk' : 'autocannon'}; ${CONNECTIONS} connections; ${SECONDS}s per run; ${ROUNDS} rounds`);
  const upstream = await startUpstream();
  const reference = NGINX ? await startReference(upstream) : undefined;
  const redisUrl = await startRedis();
  const s3 = await startS3();
  const proxyPort = await freePort();
  const env = {
    IMGPROXY_URL: upstream,
    IMGPROXY_BIND: `127.0.0.1:${proxyPort}`,
    REDIS_URL: redisUrl,
    S3_BUCKET: 'bench',
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    LOG_LEVEL: 'warn',
    QUEUE_NAME: 'bench-http',
    // every unique response is teed, however far the uploader falls behind (with the default
    // 256 MiB the backlog fills within seconds, and the proxy then sheds new images instead)
    CACHE_BACKLOG_MAX_BYTES: String(16 * 2 ** 30),
  };
  const metricsPort = await freePort();
  const proxy = start(
    process.execPath,
    [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), 'apps/proxy/dist/index.js'],
    { ...env, METRICS_BIND: `127.0.0.1:${metricsPort}` },
    'proxy',
  );
  /** The proxy's cache decisions so far, by outcome (its /metrics). */
  const decisions = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Object.fromEntries(
      [...text.matchAll(/^imgproxy_cache_cache_decisions_total\{[^}]*outcome="([^"]+)"[^}]*\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]),
    );
  };
  // the same with PROXY_WORKERS=2 (its CPU and memory include its workers)
  const clusterPort = await freePort();
  const clustered = start(
    process.execPath,
    ['apps/proxy/dist/index.js'],
    { ...env, IMGPROXY_BIND: `127.0.0.1:${clusterPort}`, METRICS_BIND: 'off', PROXY_WORKERS: '2' },
    'proxy ×2',
  );
  const uploader = start(process.execPath, ['apps/uploader/dist/index.js'], { ...env, METRICS_BIND: 'off', UPLOAD_CONCURRENCY: '16' }, 'uploader');
  const ours = `http://127.0.0.1:${proxyPort}`;
  const oursClustered = `http://127.0.0.1:${clusterPort}`;
  await until(() => httpOk(`${ours}/health`), 'the proxy');
  await until(() => httpOk(`${oursClustered}/health`), 'the proxy with 2 workers');

  // warm-up, and a check that every target serves the image
  for (const url of [upstream, ours, oursClustered, reference].filter(Boolean)) {
    const res = await fetch(`${url}/bench/warmup.png`);
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200 || !body.equals(image)) throw new Error(`${url} answered ${res.status} with ${body.length} bytes`);
  }

  const targets = [
    ['nginx proxy_pass', 'unique', reference, true],
    ['imgproxy-cache', 'unique', ours, true],
    ['imgproxy-cache ×2', 'unique', oursClustered, true],
    ['nginx proxy_pass', 'repeated', reference, false],
    ['imgproxy-cache', 'repeated', ours, false],
    ['imgproxy-cache ×2', 'repeated', oursClustered, false],
    ['upstream direct', 'repeated', upstream, false],
  ].filter(([, , url]) => url);
  const results = new Map();
  const teed = { queued: 0, other: 0 }; // the single proxy's unique runs
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, kind, url, unique] of targets) {
      const counted = url === ours && unique ? await decisions() : undefined;
      const r = await withCpuShares(SECONDS, () => load(url, unique));
      if (counted) {
        // the hand-offs finish after the responses: wait until the counts stop moving
        let last = '';
        await until(
          async () => {
            const now = JSON.stringify(await decisions());
            const settled = now === last;
            last = now;
            if (!settled) await new Promise((resolve) => setTimeout(resolve, 200));
            return settled;
          },
          'the hand-offs to finish',
          30_000,
        );
        for (const [outcome, n] of Object.entries(JSON.parse(last))) teed[outcome === 'queued' ? 'queued' : 'other'] += n - (counted[outcome] ?? 0);
      }
      const key = `${name}|${kind}`;
      results.set(key, [...(results.get(key) ?? []), r]);
      console.log(
        `round ${round}  ${name.padEnd(17)} ${kind.padEnd(9)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}  cpu ${Object.entries(
          r.cpu,
        )
          .filter(([, v]) => v >= 0.01)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(', ')}`,
      );
    }
  }
  const memory = rssMiB(proxy.pid);
  const clusteredMemory = rssMiB(clustered.pid, true);
  clustered.kill('SIGTERM');
  await until(() => clustered.exitCode !== null, 'the proxy with 2 workers to stop', 30_000);
  // the uploads queued by the runs would compete with the throughput measurement
  uploader.kill('SIGKILL');
  proxy.kill('SIGTERM'); // exits by itself, writing its profile under BENCH_CPU_PROF
  await until(() => proxy.exitCode !== null, 'the proxy to stop', 30_000);
  const uploads = await uploaderRounds(redisUrl, s3);
  console.log(
    `uploads: queue ${uploads.queueRate.toFixed(0)}/s vs PutObject loop ${uploads.loopRate.toFixed(0)}/s: ${(uploads.queueRate / uploads.loopRate).toFixed(2)}×, failed ${uploads.failed}`,
  );

  // median of the rounds for each
  const med = (xs) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  };
  const summary = (key) => {
    const rs = results.get(key);
    if (!rs) return undefined;
    const cpu = {};
    for (const r of rs) for (const [k, v] of Object.entries(r.cpu)) cpu[k] = (cpu[k] ?? 0) + v / rs.length;
    return {
      rps: med(rs.map((r) => r.rps)),
      p50: med(rs.map((r) => r.p50)),
      p99: med(rs.map((r) => r.p99)),
      errors: rs.reduce((a, r) => a + r.errors, 0),
      cpu,
    };
  };
  const rows = [];
  for (const [name, kind] of targets.map(([n, k]) => [n, k]).filter((v, i, a) => a.findIndex((w) => w[0] === v[0] && w[1] === v[1]) === i)) {
    const s = summary(`${name}|${kind}`);
    const ref = summary(`nginx proxy_pass|${kind}`);
    const ratio =
      ref && name.startsWith('imgproxy-cache')
        ? ` ${(s.rps / ref.rps).toFixed(2)}× | ${s.p99 - ref.p99 >= 0 ? '+' : ''}${(s.p99 - ref.p99).toFixed(2)} ms`
        : ' | ';
    const cpu = Object.entries(s.cpu)
      .filter(([, v]) => v >= 0.05)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v.toFixed(2)}`)
      .join(', ');
    rows.push(`| ${name} | ${kind} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.errors} |${ratio} | ${cpu} |`);
  }
  const cpu = cpus()[0]?.model ?? 'unknown';
  const report = `# Benchmark results

Written by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}; machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB,
Node ${process.version}, ${NGINX ? spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim() : 'no nginx'}; load: ${WRK ? 'wrk' : 'autocannon'},
${CONNECTIONS} connections, ${SECONDS} s per run, median of ${ROUNDS} interleaved rounds. Everything (load generator,
upstream, nginx, proxy, uploader, Redis, s3rver) shares the same cores. The upstream answers a ${(image.length / 1024).toFixed(0)} KB PNG
for every path; "unique" asks for a new path each request (each response is teed to Redis and queued: in the single
proxy's unique runs, ${teed.queued} responses were queued and ${teed.other} were not; CACHE_BACKLOG_MAX_BYTES is set high so that the backlog never fills),
"repeated" asks for one path (the dedup path). "imgproxy-cache ×2" is the same proxy with PROXY_WORKERS=2
(a primary and two worker processes); both share one uploader. The last column is the CPU each process used during
the run (1.00 = one core of the ${cpus().length}; nginx counts its worker, wrk is not shown): the uploader keeps
draining what the unique runs queued during the runs that follow, at lower priority (UPLOAD_NICE).

| target | URLs | req/s | p50 ms | p99 ms | errors | req/s vs nginx | p99 vs nginx | CPU during the run, in cores |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

Proxy memory (RSS) after the runs: **${memory.toFixed(0)} MiB**; with PROXY_WORKERS=2 (the primary and its two
workers together): ${clusteredMemory.toFixed(0)} MiB.

Uploader: ${uploads.jobs} queued images of 30 KB, one uploader with UPLOAD_CONCURRENCY=${uploads.concurrency} and UPLOAD_NICE=0, after the runs, alone,
${uploads.rounds} rounds alternating with the loop (mean of each):
**${uploads.queueRate.toFixed(0)} uploads/s**, against a plain loop of PutObject calls with ${uploads.concurrency} in flight on the same
s3rver: ${uploads.loopRate.toFixed(0)}/s (**${(uploads.queueRate / uploads.loopRate).toFixed(2)}×**); failed: ${uploads.failed}.
`;
  writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), report);
  console.log(`\n${report}`);
}

main()
  .catch((error) => {
    console.error(error);
    for (const c of children) console.error(c.spawnargs.join(' '), '\n', c.output().slice(-2000));
    process.exitCode = 1;
  })
  .finally(async () => {
    // SIGTERM first: nginx's master then stops its workers (SIGKILL would leave them running)
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await until(() => children.every((c) => c.exitCode !== null || c.signalCode !== null), 'the children to stop', 3_000).catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
    setTimeout(() => process.exit(), 500).unref();
  });
