// A fixed rate of new images on a zero-cost upstream, so that the cost at low rates shows without
// the image work: our stack beside the minimal Node proxy, the Go tool and PUT loops at the same rate.
import { commandsCell, cpuCell, f1, f2, sum, versusFloor } from '../lib/format.mjs';
import { paced, putLoop, settle, warm } from '../lib/load.mjs';
import { measure } from '../lib/measure.mjs';
import { GO_PORT, goPeerBinary, startGoPeer, startMinimalProxy, startStaticUpstream } from '../lib/pieces.mjs';
import { rssMiB, until } from '../lib/proc.mjs';
import { startStack } from '../lib/stack.mjs';

export async function pacedRuns(bench) {
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
