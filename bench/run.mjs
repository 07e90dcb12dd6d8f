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
// lib/load.mjs and lib/measure.mjs, each scenario in scenarios/; all take `bench`, the run's context.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { f1 } from './lib/format.mjs';
import { fastS3 } from './lib/nginx.mjs';
import { startRedis } from './lib/pieces.mjs';
import { freePort, Procs } from './lib/proc.mjs';
import { hits } from './scenarios/hits.mjs';
import { idle } from './scenarios/idle.mjs';
import { pacedRuns } from './scenarios/paced.mjs';
import { realWork } from './scenarios/real.mjs';
import { saturation } from './scenarios/saturation.mjs';

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
