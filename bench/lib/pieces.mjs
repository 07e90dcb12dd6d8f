// The processes under test beside our stack: the bench's Redis, the upstreams (libvips through
// sharp, or nginx answering one image), the minimal Node proxy and the Go tool users migrate from.
// Each takes the bench's context (`bench`: procs, node, root, work, bucket, s3Endpoint).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { staticUpstream } from './nginx.mjs';
import { freePort, httpOk, until } from './proc.mjs';

/** A Redis of the bench's own: `client` is the bench's connection, `url` the stacks'. */
export async function startRedis(bench) {
  const port = await freePort();
  const child = bench.procs.start('redis', 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--maxmemory-policy',
    'noeviction',
  ]);
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { maxRetriesPerRequest: null });
  // refused until redis-server listens: the ping below waits for it
  client.on('error', () => undefined);
  await until(async () => (await client.ping()) === 'PONG', 'redis-server');
  return { client, url, child };
}

export async function startSharpUpstream(bench, port0) {
  const port = port0 ?? (await freePort());
  const child = bench.procs.start('upstream (sharp)', bench.node, ['bench/upstream-sharp.mjs', String(port)], {}, { cwd: bench.root });
  const url = `http://127.0.0.1:${port}`;
  await until(() => httpOk(`${url}/health`), 'the sharp upstream', 60_000);
  return { url, child };
}

/** A zero-cost upstream: nginx answering every path with one ~30 KB WebP (`imageBytes` long). */
export async function startStaticUpstream(bench, port) {
  const www = join(bench.work, 'www');
  mkdirSync(www, { recursive: true });
  // 300×200 of a pattern that compresses like a photo: about 30 KB, the size of the PUT loop's bodies
  const raw = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + ((i / 900) | 0) * 3) % 251;
  const image = await sharp(raw, { raw: { width: 300, height: 200, channels: 3 } })
    .webp({ quality: 80 })
    .toBuffer();
  writeFileSync(join(www, 'image.webp'), image);
  const upstream = await staticUpstream(bench.procs, port ?? (await freePort()), www, 'image.webp', 'image/webp');
  return { ...upstream, imageBytes: image.length };
}

export async function startMinimalProxy(bench, upstream) {
  const port = await freePort();
  const child = bench.procs.start('minimal Node proxy', bench.node, ['bench/minimal-proxy.mjs', String(port), upstream], {}, { cwd: bench.root });
  const url = `http://127.0.0.1:${port}`;
  await until(() => httpOk(`${url}/health`), 'the minimal proxy');
  return { url, child };
}

/**
 * The Go tool users migrate from (../shared/peers/seed-go), when it builds here: its upstream is
 * hard-coded to 127.0.0.1:8081, and its mux answers 301 to a path holding `//`, so it is given
 * percent-encoded sources (ENCODED=1 in wrk-report.lua).
 */
export const GO_PORT = 8081;

export function goPeerBinary(bench) {
  const build = join(bench.root, '..', 'shared', 'peers', 'seed-go', 'build.sh');
  const out = spawnSync('sh', [build], { encoding: 'utf8' });
  const path = out.stdout.trim().split('\n').at(-1);
  return out.status === 0 && path ? path : undefined;
}

export async function startGoPeer(bench, binary) {
  const port = await freePort();
  const child = bench.procs.start(
    'the Go tool',
    binary,
    [],
    {
      IMGPROXY_BIND: `127.0.0.1:${port}`,
      S3_BUCKET: bench.bucket,
      S3_ENDPOINT: bench.s3Endpoint,
      S3_FOLDER: 'go/',
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    { cwd: bench.work },
  );
  const url = `http://127.0.0.1:${port}`;
  await until(() => httpOk(`${url}/bench/rs:fit:10:10/q:50/cb:probe/plain/local:%2F%2F%2Fphoto.jpg@webp`), 'the Go tool', 30_000);
  return { url, child };
}
