// Secondary: a zero-cost upstream, 32 connections as fast as they go; this hides the fixed costs
// per request and per job that low rates pay.
import { cpuCell, f1, f2 } from '../lib/format.mjs';
import { wrk } from '../lib/load.mjs';
import { measure } from '../lib/measure.mjs';
import { referenceProxy } from '../lib/nginx.mjs';
import { startMinimalProxy, startStaticUpstream } from '../lib/pieces.mjs';
import { freePort } from '../lib/proc.mjs';
import { startStack } from '../lib/stack.mjs';

export async function saturation(bench) {
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
