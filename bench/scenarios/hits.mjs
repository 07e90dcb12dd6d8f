// Stored images, 32 connections: the bucket itself (nginx serving the files), nginx proxy_cache
// warm, and our proxy with read-through from its memory tier and from the bucket alone.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuCell, f1, f2 } from '../lib/format.mjs';
import { requestAll, wrk } from '../lib/load.mjs';
import { measure } from '../lib/measure.mjs';
import { bucketS3, cachingProxy } from '../lib/nginx.mjs';
import { startStaticUpstream } from '../lib/pieces.mjs';
import { freePort } from '../lib/proc.mjs';
import { startStack } from '../lib/stack.mjs';

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

export async function hits(bench) {
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
