#!/usr/bin/env node
// `npm run bench`: what imgproxy-cache costs beside the image server, at the rates users run.
// Not part of `npm test`: speed is measured here, never asserted. Prints its tables; with
// `-- --write` (or BENCH_WRITE=1) it also writes bench/RESULTS.md.
//
// Scenarios (BENCH_ONLY=real,paced,saturation,hits,idle picks some):
//   real        the headline: an upstream doing real image work (libvips through sharp, resizing a
//               photo to WebP at a new size for every request), 32 connections, new images only:
//               direct, through nginx proxy_pass, through the Go tool, through our stack as
//               `npm start` runs it (one scheduling group, UPLOAD_NICE counts) and as separate
//               services (groups of their own)
//   paced       a fixed rate of new images (BENCH_RATES, default 50 and 200 per second) on a
//               zero-cost upstream, so that the cost at low rates shows without the image work:
//               our stack beside a minimal Node proxy (the runtime's floor), and PUT loops at the
//               same rate (the uploader's S3 client, a plain AWS SDK client, SigV4 + undici, unsigned) beside the uploader, and the Go tool
//               users migrate from; each process serves BENCH_WARMUP (4000) images or PUTs first
//   saturation  zero-cost upstream, 32 connections as fast as they go (secondary: hides the fixed
//               costs per request and per job that low rates pay)
//   hits        stored images (BENCH_HITS_IMAGES, 1000, in random order), 32 connections: the bucket
//               itself (nginx serving the files), nginx proxy_cache warm, and our proxy with
//               read-through from its memory tier and from the bucket alone
//   idle        our services with nothing to do
//
// S3 is a fast stand-in (nginx answering as S3 does, storing nothing): a remote S3 costs this
// host nothing. CPU comes from /proc (all threads; the uploader's counted until its backlog is
// drained), Redis's commands from INFO commandstats.
//
// The processes under test are in lib/pieces.mjs and lib/stack.mjs, the load and its measurement in
// lib/load.mjs and lib/measure.mjs; all take `bench`, the run's context, as the scenarios below do.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandsCell, cpuCell, f1, f2, sum, versusFloor } from './lib/format.mjs';
import { paced, putLoop, requestAll, settle, warm, wrk } from './lib/load.mjs';
import { measure } from './lib/measure.mjs';
import { bucketS3, cachingProxy, fastS3, referenceProxy } from './lib/nginx.mjs';
import { GO_PORT, goPeerBinary, startGoPeer, startMinimalProxy, startRedis, startSharpUpstream, startStaticUpstream } from './lib/pieces.mjs';
import { cpuSeconds, freePort, Procs, rssMiB, until } from './lib/proc.mjs';
import { startStack } from './lib/stack.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const PACED_SECONDS = Number(process.env.BENCH_PACED_SECONDS ?? 20);
// Requests (or PUTs) every measured process serves first: V8 fully optimises a function only after
// some thousands of calls (--invocation-count-for-turbofan), as a long-running service long has.
const WARMUP = Number(process.env.BENCH_WARMUP ?? 4000);
const RATES = (process.env.BENCH_RATES ?? '50,200').split(',').map(Number);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'real,paced,saturation,hits,idle').split(','));
// Our stack again under other settings, beside the default, in the real-work and paced scenarios:
// BENCH_VARIANTS='gather-0:ENQUEUE_GATHER_MS=0;arenas:MALLOC_ARENA_MAX=2,UV_THREADPOOL_SIZE=2'
const VARIANTS = (process.env.BENCH_VARIANTS ?? '')
  .split(';')
  .filter(Boolean)
  .map((variant) => {
    const [name, settings = ''] = variant.split(':');
    return [
      name,
      Object.fromEntries(
        settings
          .split(',')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      ),
    ];
  });
const HIT_IMAGES = Number(process.env.BENCH_HITS_IMAGES ?? 1000);
const WRITE = process.argv.includes('--write') || process.env.BENCH_WRITE === '1';
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

for (const tool of ['nginx', 'wrk', 'redis-server']) {
  if (!have(tool)) {
    console.error(`npm run bench needs ${tool}: apt-get install -y nginx wrk redis-server`);
    process.exit(2);
  }
}

const work = mkdtempSync(join(tmpdir(), 'imgproxy-cache-bench-'));
chmodSync(work, 0o755); // nginx's workers run as nobody when started by root
const lines = []; // what RESULTS.md gets

/** The run's context, which the pieces and scenarios take: its settings, its processes, its output. */
const bench = {
  root: ROOT,
  node: process.execPath,
  work,
  procs: new Procs(work),
  seconds: SECONDS,
  pacedSeconds: PACED_SECONDS,
  warmup: WARMUP,
  rates: RATES,
  variants: VARIANTS,
  hitImages: HIT_IMAGES,
  connections: 32,
  bucket: 'bench',
  // BENCH_CPU_PROF=<dir>: a V8 CPU profile of every service (read them with bench/lib/cpuprofile.mjs)
  cpuProf: process.env.BENCH_CPU_PROF,
  /** the bench's Redis ({ client, url, child }) and the S3 stand-in's URL, once started */
  redis: undefined,
  s3Endpoint: undefined,
  /** stacks started so far: each gets a queue of its own */
  stacks: 0,
  /** each scenario's memory at its end, for the Memory table */
  rssAfter: {},
  say(text = '') {
    console.log(text);
    lines.push(text);
  },
};
const { say, rssAfter } = bench;

function estimate() {
  let s = 15;
  if (ONLY.has('real')) s += (5 + VARIANTS.length) * (SECONDS + 12);
  if (ONLY.has('paced')) s += 15 + RATES.length * ((6 + VARIANTS.length) * (PACED_SECONDS + 6) + (5 + VARIANTS.length) * (WARMUP / 400 + 20));
  if (ONLY.has('saturation')) s += 6 * (10 + 3);
  if (ONLY.has('hits')) s += 4 * (SECONDS + 15) + 30;
  if (ONLY.has('idle')) s += 45;
  return Math.ceil(s / 60);
}

// --- scenarios -----------------------------------------------------------------------------

async function realWork(bench) {
  const { procs, say, seconds, rssAfter } = bench;
  say('## Real image work (the headline)');
  say();
  say(
    `The upstream resizes a 1200×800 photo to WebP with libvips (sharp) at a new size and quality for every request; 32 connections, ${seconds} s each, new images only. CPU per image in ms, each process; the uploader's and Redis's until the uploads are drained.`,
  );
  say();
  const go = goPeerBinary(bench);
  if (!go) say('(The Go tool did not build here: its row is missing.)');
  const upstream = await startSharpUpstream(bench, go ? GO_PORT : undefined);
  const nginx = await referenceProxy(procs, await freePort(), upstream.url);
  const rows = [];
  const direct = await measure(bench, { upstream: upstream.child.pid }, () => wrk(bench, upstream.url, true, seconds));
  rows.push(['direct', direct]);
  const viaNginx = await measure(bench, { upstream: upstream.child.pid, nginx: nginx.child.pid }, () => wrk(bench, nginx.url, true, seconds));
  rows.push(['nginx proxy_pass', viaNginx]);
  if (go) {
    const peer = await startGoPeer(bench, go);
    await wrk(bench, peer.url, true, 2, undefined, true); // warm-up
    // it uploads in goroutines of its own: counted until its CPU settles
    const r = await measure(bench, { upstream: upstream.child.pid, 'the Go tool': peer.child.pid }, async () => {
      const result = await wrk(bench, peer.url, true, seconds, undefined, true);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      return result;
    });
    rows.push(['the Go tool (serves and uploads in one process)', r]);
    rssAfter['real work, the Go tool'] = { proxy: rssMiB(peer.child.pid), uploader: 0 };
    await procs.stop(peer.child);
  }
  const runs = [['npm start', {}, 'npm start'], ['separate', {}, 'separate'], ...bench.variants.map(([name, env]) => ['npm start', env, `npm start, ${name}`])];
  for (const [shape, env, label] of runs) {
    const stack = await startStack(bench, shape, upstream.url, env);
    await wrk(bench, stack.url, true, 2); // warm-up
    await until(async () => (await stack.backlog()) === 0, 'the warm-up uploads', 120_000, 100);
    const r = await measure(
      bench,
      { upstream: upstream.child.pid, ...stack.pids, redis: bench.redis.child.pid },
      () => wrk(bench, stack.url, true, seconds),
      stack,
    );
    rows.push([`imgproxy-cache (${label})`, r]);
    rssAfter[`real work, ${label}`] = await stack.rss();
    await stack.stop();
  }
  say('| in front of the image server | images/s | vs direct | p99 ms | errors | teed | CPU ms per image | Redis ms/image | Redis commands/image |');
  say('|---|---|---|---|---|---|---|---|---|');
  for (const [name, r] of rows) {
    say(
      `| ${name} | ${r.rate.toFixed(1)} | ${f2(r.rate / direct.rate)}× | ${f1(r.p99)} | ${r.errors} | ${r.teed ?? ''} | ${cpuCell(r)} | ${f2(r.redisMsPerImage)} | ${f1(r.commandsPerImage)} |`,
    );
  }
  say();
  for (const [name, r] of rows.filter(([, r]) => r.commandsPerImage !== undefined)) say(`Redis commands per image, ${name}: ${commandsCell(r)}`);
  say();
  await procs.stop(nginx.child);
  await procs.stop(upstream.child);
}

async function pacedRuns(bench) {
  const { procs, say, pacedSeconds: seconds, rssAfter } = bench;
  const go = goPeerBinary(bench);
  // first: the paragraph names the size of its image
  const upstream = await startStaticUpstream(bench, go ? GO_PORT : undefined);
  say('## Paced: a fixed rate of new images on a zero-cost upstream');
  say();
  say(
    `${seconds} s at each rate; the upstream answers a ${Math.round(upstream.imageBytes / 1024)} KB WebP at once. CPU per image in ms: the proxy beside a minimal Node proxy (node:http and an undici Pool, no caching) at the same rate, the uploader beside PUT loops at the same rate against the same S3 stand-in. Each of them first serves ${bench.warmup} images (or PUTs), as a service that has run for a while has.`,
  );
  say();
  const minimal = await startMinimalProxy(bench, upstream.url);
  warm(bench, minimal.url);
  await settle();
  say('| rate /s | what | images | p99 ms | CPU ms per image | Redis ms/image | Redis commands/image |');
  say('|---|---|---|---|---|---|---|');
  const details = [];
  for (const rate of bench.rates) {
    const floor = await measure(bench, { proxy: minimal.child.pid }, () => paced(bench, minimal.url, rate, seconds));
    say(`| ${rate} | minimal Node proxy | ${floor.images} | ${f1(floor.p99)} | ${cpuCell(floor)} | | |`);
    // the build's defaults first, then each of BENCH_VARIANTS
    let ours;
    for (const [name, env] of [[undefined, {}], ...bench.variants]) {
      const stack = await startStack(bench, 'npm start', upstream.url, env);
      warm(bench, stack.url);
      await until(async () => (await stack.backlog()) === 0, 'the warm-up uploads', 300_000, 100);
      await settle();
      const r = await measure(bench, { ...stack.pids, redis: bench.redis.child.pid }, () => paced(bench, stack.url, rate, seconds), stack);
      say(
        `| ${rate} | imgproxy-cache${name ? `, ${name}` : ''}${versusFloor(r, floor)} | ${r.images} | ${f1(r.p99)} | ${cpuCell(r)} | ${f2(r.redisMsPerImage)} | ${f1(r.commandsPerImage)} |`,
      );
      rssAfter[`paced ${rate}/s${name ? `, ${name}` : ''}`] = await stack.rss();
      await stack.stop();
      if (!name) {
        ours = r;
        details.push([rate, r]);
      }
    }
    if (go) {
      const peer = await startGoPeer(bench, go);
      warm(bench, peer.url, true);
      await settle();
      // it uploads in goroutines of its own: counted until its CPU settles
      const r = await measure(bench, { 'the Go tool': peer.child.pid }, async () => {
        const result = paced(bench, peer.url, rate, seconds, true);
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        return result;
      });
      say(
        `| ${rate} | the Go tool (serves and uploads in one process; ours ${f2(sum(ours.cpuMsPerImage) / sum(r.cpuMsPerImage))}× its CPU) | ${r.images} | ${f1(r.p99)} | ${cpuCell(r)} | | |`,
      );
      rssAfter[`paced ${rate}/s, the Go tool`] = { proxy: rssMiB(peer.child.pid), uploader: 0 };
      await procs.stop(peer.child);
    }
    const loops = {};
    for (const mode of ['ours', 'sigv4', 'sdk', 'unsigned']) loops[mode] = putLoop(bench, mode, rate, seconds);
    say(
      `| ${rate} | PUT loops: the uploader's S3 client (its floor) ${f2(loops.ours.cpuMsPerPut)}, a plain AWS SDK client ${f2(loops.sdk.cpuMsPerPut)}, SigV4 + undici ${f2(loops.sigv4.cpuMsPerPut)}, unsigned ${f2(loops.unsigned.cpuMsPerPut)}${ours.cpuMsPerImage.uploader === undefined ? '' : `; uploader ${f2(ours.cpuMsPerImage.uploader / loops.ours.cpuMsPerPut)}× its floor`} | ${loops.ours.puts} | | | | |`,
    );
  }
  say();
  for (const [rate, r] of details) say(`Redis commands per image at ${rate}/s: ${commandsCell(r)}`);
  say();
  await procs.stop(minimal.child);
  await procs.stop(upstream.child);
}

async function saturation(bench) {
  const { procs, say } = bench;
  say('## Saturation (secondary): zero-cost upstream, 32 connections as fast as they go');
  say();
  const upstream = await startStaticUpstream(bench);
  const nginx = await referenceProxy(procs, await freePort(), upstream.url);
  const minimal = await startMinimalProxy(bench, upstream.url);
  const stack = await startStack(bench, 'npm start', upstream.url);
  say('| target | URLs | req/s | vs nginx | p99 ms | CPU ms per request |');
  say('|---|---|---|---|---|---|');
  for (const unique of [true, false]) {
    const kind = unique ? 'new' : 'repeated';
    const ref = await measure(bench, { nginx: nginx.child.pid }, () => wrk(bench, nginx.url, unique, 10));
    say(`| nginx proxy_pass | ${kind} | ${ref.rate.toFixed(0)} | | ${f1(ref.p99)} | ${cpuCell(ref)} |`);
    const min = await measure(bench, { proxy: minimal.child.pid }, () => wrk(bench, minimal.url, unique, 10));
    say(`| minimal Node proxy | ${kind} | ${min.rate.toFixed(0)} | ${f2(min.rate / ref.rate)}× | ${f1(min.p99)} | ${cpuCell(min)} |`);
    const ours = await measure(bench, { ...stack.pids, redis: bench.redis.child.pid }, () => wrk(bench, stack.url, unique, 10), unique ? stack : undefined);
    say(`| imgproxy-cache | ${kind} | ${ours.rate.toFixed(0)} | ${f2(ours.rate / ref.rate)}× | ${f1(ours.p99)} | ${cpuCell(ours)} |`);
  }
  say();
  bench.rssAfter.saturation = await stack.rss();
  await stack.stop();
  for (const c of [minimal.child, nginx.child, upstream.child]) await procs.stop(c);
}

/** The stored images, the object of each path as the uploader names it, and files of their paths for wrk. */
function storeImages(bench, image) {
  const { work, bucket, hitImages } = bench;
  const bucketRoot = join(work, 'bucket');
  mkdirSync(join(bucketRoot, bucket), { recursive: true });
  const imagePaths = [];
  const objectPaths = [];
  for (let i = 0; i < hitImages; i++) {
    const path = `/bench/rs:fit:300:200/cb:hit-${i}/plain/local:///photo.jpg@webp`;
    const key = createHash('md5').update(path, 'latin1').digest('hex');
    writeFileSync(join(bucketRoot, bucket, key), image);
    imagePaths.push(path);
    objectPaths.push(`/${bucket}/${key}`);
  }
  const imagesFile = join(work, 'hit-images.txt');
  const objectsFile = join(work, 'hit-objects.txt');
  writeFileSync(imagesFile, `${imagePaths.join('\n')}\n`);
  writeFileSync(objectsFile, `${objectPaths.join('\n')}\n`);
  const keysFile = join(work, 'hit-keys.txt');
  writeFileSync(keysFile, `${objectPaths.map((p) => p.split('/').at(-1)).join('\n')}\n`);
  return { bucketRoot, imagePaths, objectPaths, imagesFile, objectsFile, keysFile };
}

/** What a bucket read costs the proxy, against a bare signed GET. */
function getLoops(bench, bucketUrl, keysFile) {
  const loops = {};
  for (const mode of ['ours', 'sdk-sign', 'unsigned']) {
    const args = ['bench/get-loop.mjs', mode, bucketUrl, bench.bucket, keysFile, String(Math.min(bench.seconds, 10))];
    const out = spawnSync(bench.node, args, { cwd: bench.root, encoding: 'utf8' });
    const line = out.stdout.trim().split('\n').at(-1);
    if (!line?.startsWith('{')) throw new Error(`get-loop ${mode} failed: ${out.stderr}`);
    loops[mode] = JSON.parse(line);
  }
  return loops;
}

async function hits(bench) {
  const { procs, say, seconds, hitImages } = bench;
  say('## Hits: stored images');
  say();
  const upstream = await startStaticUpstream(bench);
  const image = readFileSync(join(bench.work, 'www', 'image.webp'));
  const { bucketRoot, imagePaths, objectPaths, imagesFile, objectsFile, keysFile } = storeImages(bench, image);
  say(
    `${hitImages} stored images of ${Math.round(image.length / 1024)} KB, requested in random order by 32 connections for ${seconds} s each. The bucket is nginx serving the files (S3 path style); every cache is warm (each image requested ${Math.max(1, Math.round(bench.warmup / hitImages))} times first). CPU per hit in ms, each process; "from memory" is the share of hits the proxy served without a bucket read.`,
  );
  say();
  const bucket = await bucketS3(procs, await freePort(), bench.bucket, bucketRoot);
  const cache = await cachingProxy(procs, await freePort(), upstream.url, join(bench.work, 'proxy-cache'));
  const times = Math.max(1, Math.round(bench.warmup / hitImages));
  say('| serving stored images | hits/s | vs nginx proxy_cache | p99 ms | errors | from memory | CPU ms per hit |');
  say('|---|---|---|---|---|---|---|');
  await requestAll(bucket.url, objectPaths, 1);
  const alone = await measure(bench, { bucket: bucket.child.pid }, () => wrk(bench, bucket.url, false, seconds, objectsFile));
  await requestAll(cache.url, imagePaths, times);
  const nginx = await measure(bench, { nginx: cache.child.pid, upstream: upstream.child.pid }, () => wrk(bench, cache.url, false, seconds, imagesFile));
  say(
    `| the bucket itself (nginx serving the files) | ${alone.rate.toFixed(0)} | ${f2(alone.rate / nginx.rate)}× | ${f1(alone.p99)} | ${alone.errors} | | ${cpuCell(alone)} |`,
  );
  say(`| nginx proxy_cache, warm | ${nginx.rate.toFixed(0)} | | ${f1(nginx.p99)} | ${nginx.errors} | | ${cpuCell(nginx)} |`);
  for (const [name, memory] of [
    ['from its memory tier (CACHE_MEMORY_BYTES default)', undefined],
    ['from the bucket alone (CACHE_MEMORY_BYTES=0)', '0'],
  ]) {
    const stack = await startStack(bench, 'npm start', upstream.url, {
      CACHE_READ_THROUGH: 'true',
      S3_ENDPOINT: bucket.url,
      ...(memory === undefined ? {} : { CACHE_MEMORY_BYTES: memory }),
    });
    await requestAll(stack.url, imagePaths, times);
    const before = await stack.metrics();
    const r = await measure(bench, { ...stack.pids, bucket: bucket.child.pid, redis: bench.redis.child.pid }, () =>
      wrk(bench, stack.url, false, seconds, imagesFile),
    );
    const after = await stack.metrics();
    const hitsServed = (after.hits ?? 0) - (before.hits ?? 0);
    const fromMemory = (after.memory ?? 0) - (before.memory ?? 0);
    say(
      `| imgproxy-cache, ${name} | ${r.rate.toFixed(0)} | ${f2(r.rate / nginx.rate)}× | ${f1(r.p99)} | ${r.errors} | ${hitsServed > 0 ? `${((fromMemory / hitsServed) * 100).toFixed(0)} %` : ''} | ${cpuCell(r)} |`,
    );
    if (hitsServed < r.images) say(`(${r.images - hitsServed} of its ${r.images} answers were not hits)`);
    bench.rssAfter[`hits ${memory === undefined ? 'from memory' : 'from the bucket'}`] = await stack.rss();
    await stack.stop();
  }
  say();
  const loops = getLoops(bench, bucket.url, keysFile);
  say(
    `A bucket read alone (GET loops, 32 in flight, CPU µs per GET of the loop's process): the proxy's BucketReader ${loops.ours.cpuUsPerGet.toFixed(0)} (${loops.ours.rate.toFixed(0)}/s), signed with the SDK's SignatureV4 ${loops['sdk-sign'].cpuUsPerGet.toFixed(0)} (${loops['sdk-sign'].rate.toFixed(0)}/s), unsigned ${loops.unsigned.cpuUsPerGet.toFixed(0)} (${loops.unsigned.rate.toFixed(0)}/s).`,
  );
  say();
  for (const c of [cache.child, bucket.child, upstream.child]) await procs.stop(c);
}

async function idle(bench) {
  const { procs, say } = bench;
  const upstream = await startStaticUpstream(bench);
  const stack = await startStack(bench, 'npm start', upstream.url);
  await paced(bench, stack.url, 20, 1);
  await until(async () => (await stack.backlog()) === 0, 'the uploads', 60_000, 100);
  await settle();
  const before = Object.fromEntries(Object.entries(stack.pids).map(([k, pid]) => [k, cpuSeconds(pid, true)]));
  const seconds = 20;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  say('## Idle');
  say();
  say(
    `Share of one core used over ${seconds} s with nothing to do, from 15 s after the last upload: ${Object.entries(stack.pids)
      .map(([k, pid]) => `${k} ${(((cpuSeconds(pid, true) - before[k]) / seconds) * 100).toFixed(2)} %`)
      .join(', ')}.`,
  );
  say();
  await stack.stop();
  await procs.stop(upstream.child);
}

async function main() {
  console.log(
    `npm run bench: about ${estimate()} minutes (BENCH_ONLY, BENCH_SECONDS, BENCH_RATES to change it)${WRITE ? '' : '; add -- --write to save bench/RESULTS.md'}`,
  );
  const nginxVersion = spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim();
  say('# Benchmark results');
  say();
  say(
    `Written by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${nginxVersion.replace('nginx version: ', '')}, redis-server, wrk. Everything shares this machine's cores. Compare ratios within one run: hosts differ.`,
  );
  say();
  bench.redis = await startRedis(bench);
  bench.s3Endpoint = (await fastS3(bench.procs, await freePort(), bench.bucket)).url;
  if (ONLY.has('real')) await realWork(bench);
  if (ONLY.has('paced')) await pacedRuns(bench);
  if (ONLY.has('saturation')) await saturation(bench);
  if (ONLY.has('hits')) await hits(bench);
  if (ONLY.has('idle')) await idle(bench);
  if (Object.keys(rssAfter).length > 0) {
    say('## Memory');
    say();
    say(
      "Resident memory (MiB) after each scenario, and what V8 holds of it: its heap (total), buffers outside it (external), the memory tier's images (inside external).",
    );
    say();
    say('| after | proxy RSS | proxy heap | proxy external | memory tier | uploader RSS | uploader heap | uploader external | RSS in all |');
    say('|---|---|---|---|---|---|---|---|---|');
    for (const [k, v] of Object.entries(rssAfter)) {
      say(
        `| ${k} | ${v.proxy.toFixed(0)} | ${f1(v.proxyV8?.heap)} | ${f1(v.proxyV8?.external)} | ${f1(v.proxyV8?.tier)} | ${v.uploader.toFixed(0)} | ${f1(v.uploaderV8?.heap)} | ${f1(v.uploaderV8?.external)} | ${(v.proxy + v.uploader).toFixed(0)} |`,
      );
    }
    say();
  }
  if (WRITE) writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), `${lines.join('\n')}\n`);
}

try {
  await main();
} finally {
  bench.redis?.client.disconnect();
  await bench.procs.stopAll();
  if (!process.env.BENCH_KEEP) rmSync(work, { recursive: true, force: true });
  else console.log(`logs kept in ${work}`);
}
