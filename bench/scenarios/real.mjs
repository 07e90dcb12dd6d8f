// The headline: an upstream doing real image work (libvips through sharp), new images only, direct
// and through nginx, the Go tool, and our stack in each shape and each of BENCH_VARIANTS.
import { commandsCell, cpuCell, f1, f2 } from '../lib/format.mjs';
import { wrk } from '../lib/load.mjs';
import { measure } from '../lib/measure.mjs';
import { referenceProxy } from '../lib/nginx.mjs';
import { GO_PORT, goPeerBinary, startGoPeer, startSharpUpstream } from '../lib/pieces.mjs';
import { freePort, rssMiB, until } from '../lib/proc.mjs';
import { startStack } from '../lib/stack.mjs';

export async function realWork(bench) {
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
