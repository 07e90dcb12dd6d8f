// Our stack in front of an upstream, as the bench runs it, and what it tells of itself: its queue's
// backlog and failures (from Redis), its cache decisions and hits (from its metrics), its memory.
import { SERVICE_NODE_FLAGS } from '../../apps/launcher/dist/node-flags.js';
import { childrenOf, cmdline, freePort, freePortPair, httpOk, rssMiB, until } from './proc.mjs';

/**
 * Our stack in front of `upstream`: `npm start`'s shape (apps/launcher: proxy and uploader
 * in one scheduling group, UPLOAD_NICE counts) or separate services (each in a group of its own,
 * as containers or systemd units are).
 */
export async function startStack(bench, shape, upstream, extraEnv = {}) {
  const { procs, node, root } = bench;
  const redis = bench.redis.client;
  const port = await freePort();
  const metrics = await freePortPair();
  const n = ++bench.stacks;
  const queue = `bench-${n}`;
  const env = {
    IMGPROXY_URL: upstream,
    IMGPROXY_BIND: `127.0.0.1:${port}`,
    REDIS_URL: bench.redis.url,
    QUEUE_NAME: queue,
    S3_BUCKET: bench.bucket,
    S3_ENDPOINT: bench.s3Endpoint,
    S3_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    LOG_LEVEL: 'warn',
    METRICS_BIND: `127.0.0.1:${metrics}`,
    // every new image is teed however far the uploader falls behind
    CACHE_BACKLOG_MAX_BYTES: String(16 * 2 ** 30),
    // BENCH_CPU_PROF=<dir>: a V8 CPU profile of every service (read them with bench/lib/cpuprofile.mjs)
    ...(bench.cpuProf ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${bench.cpuProf}` } : {}),
    ...extraEnv,
  };
  const pids = {};
  const children = [];
  const inProcess = shape === 'npm start' && env.UPLOADER_IN_PROXY !== 'false';
  if (inProcess) {
    // one process: the launcher runs both services itself
    const all = procs.start(`stack ${n}`, node, [...SERVICE_NODE_FLAGS, 'apps/launcher/dist/index.js'], env, { cwd: root });
    children.push(all);
    pids['proxy and uploader'] = all.pid;
  } else if (shape === 'npm start') {
    const all = procs.start(`stack ${n}`, node, ['apps/launcher/dist/index.js'], env, { cwd: root });
    children.push(all);
    // both services by name: a child read before its exec still shows the launcher's command line
    const named = (part) => childrenOf(all.pid).some((pid) => cmdline(pid).includes(part));
    await until(() => named('apps/uploader/dist') && named('apps/proxy/dist'), 'npm start to start the services');
    for (const pid of childrenOf(all.pid)) pids[cmdline(pid).includes('apps/uploader/dist') ? 'uploader' : 'proxy'] = pid;
  } else {
    const proxy = procs.start(`proxy ${n}`, node, [...SERVICE_NODE_FLAGS, 'apps/proxy/dist/index.js'], env, { cwd: root, detached: true });
    const uploader = procs.start(
      `uploader ${n}`,
      node,
      [...SERVICE_NODE_FLAGS, 'apps/uploader/dist/index.js'],
      { ...env, METRICS_BIND: 'off' },
      {
        cwd: root,
        detached: true,
      },
    );
    children.push(proxy, uploader);
    pids.proxy = proxy.pid;
    pids.uploader = uploader.pid;
  }
  const url = `http://127.0.0.1:${port}`;
  await until(() => httpOk(`${url}/health`), `our stack (${shape})`, 60_000);
  const keys = `bull:{${queue}}:${queue}`;
  return {
    url,
    pids,
    shape,
    /** the processes whose CPU counts until the uploads are drained */
    uploading: inProcess ? ['proxy and uploader'] : ['uploader'],
    /** jobs not finished yet */
    async backlog() {
      const [wait, active, delayed, prioritized] = await Promise.all([
        redis.llen(`${keys}:wait`),
        redis.llen(`${keys}:active`),
        redis.zcard(`${keys}:delayed`),
        redis.zcard(`${keys}:prioritized`),
      ]);
      return wait + active + delayed + prioritized;
    },
    async failed() {
      return redis.zcard(`${keys}:failed`);
    },
    /** the proxy's cache decisions so far, by outcome */
    async decisions() {
      const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
      return Object.fromEntries(
        [...text.matchAll(/^imgproxy_cache_cache_decisions_total\{[^}]*outcome="([^"]+)"[^}]*\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]),
      );
    },
    /** read-through hits so far, and those served from memory */
    async metrics() {
      const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
      const count = (re) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
      return { hits: count(/^imgproxy_cache_hits_total\{[^}]*\} (\d+)/gm), memory: count(/^imgproxy_cache_hits_total\{[^}]*tier="memory"[^}]*\} (\d+)/gm) };
    },
    /** resident memory of each service, and what V8 says of it (MiB) */
    async rss() {
      const of = async (port) => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text().catch(() => '');
        const mib = (name) => Number(new RegExp(`^imgproxy_cache_${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? Number.NaN) / 2 ** 20;
        return { heap: mib('nodejs_heap_size_total_bytes'), external: mib('nodejs_external_memory_bytes'), tier: mib('memory_tier_bytes') };
      };
      // npm start gives the uploader the admin port + 1; separate services here run it without one
      return {
        proxy: rssMiB(pids.proxy ?? pids['proxy and uploader']),
        uploader: pids.uploader ? rssMiB(pids.uploader) : 0,
        proxyV8: await of(metrics),
        uploaderV8: shape === 'npm start' ? await of(metrics + 1) : undefined,
      };
    },
    async stop() {
      for (const child of children) await procs.stop(child);
    },
  };
}
