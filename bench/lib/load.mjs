// The load the bench offers: wrk as fast as it goes, a paced rate of new images, PUT loops at a
// rate, and the warm-ups before a measurement. Each takes the bench's context first.
import { spawnSync } from 'node:child_process';

/** wrk for `seconds`: new images (`unique`), one image again and again, or a random one of the paths in the file `paths`. */
export async function wrk(bench, url, unique, seconds, paths, encoded = false) {
  const out = spawnSync('wrk', ['-t2', `-c${bench.connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency', '-s', 'bench/wrk-report.lua', url], {
    cwd: bench.root,
    env: {
      ...process.env,
      UNIQUE: unique ? '1' : '0',
      RUN_ID: Math.random().toString(36).slice(2, 8),
      ...(paths ? { PATHS: paths } : {}),
      ...(encoded ? { ENCODED: '1' } : {}),
    },
    encoding: 'utf8',
  }).stdout;
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`wrk failed: ${out}`);
  const r = JSON.parse(line);
  return { images: r.requests, rate: r.requests / (r.duration_us / 1e6), p50: r.p50 / 1000, p99: r.p99 / 1000, errors: r.errors + r.non2xx };
}

export function paced(bench, url, rate, seconds, encoded = false) {
  const args = ['bench/paced-load.mjs', url, String(rate), String(seconds), '/bench', ...(encoded ? ['encoded'] : [])];
  const out = spawnSync(bench.node, args, { cwd: bench.root, encoding: 'utf8' }).stdout;
  const r = JSON.parse(out.trim().split('\n').at(-1));
  return { images: r.ok, rate: r.ok / r.seconds, p50: r.p50, p99: r.p99, errors: r.errors };
}

/** BENCH_WARMUP new images through `url`, at 400/s. */
export function warm(bench, url, encoded = false) {
  if (bench.warmup > 0) paced(bench, url, 400, bench.warmup / 400, encoded);
}

/** After a burst V8 keeps collecting for several seconds (its memory reducer): not the steady state. */
export const settle = () => new Promise((resolve) => setTimeout(resolve, 15_000));

export function putLoop(bench, mode, rate, seconds) {
  const args = ['bench/put-loop.mjs', mode, bench.s3Endpoint, bench.bucket, String(rate), String(seconds), String(bench.warmup)];
  const out = spawnSync(bench.node, args, { cwd: bench.root, encoding: 'utf8' });
  const line = out.stdout.trim().split('\n').at(-1);
  if (!line?.startsWith('{')) throw new Error(`put-loop ${mode} failed: ${out.stderr}`);
  return JSON.parse(line);
}

/** Every path of `paths` requested `times` times, 8 at a time (a cache's warm-up, V8's too). */
export async function requestAll(url, paths, times) {
  const queue = Array.from({ length: times }, () => paths).flat();
  let failed = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let path = queue.pop(); path !== undefined; path = queue.pop()) {
        const res = await fetch(url + path);
        await res.arrayBuffer();
        if (res.status !== 200) failed += 1;
      }
    }),
  );
  if (failed > 0) throw new Error(`${failed} warm-up requests to ${url} failed`);
}
