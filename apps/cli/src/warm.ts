import '@imgproxy-cache/shared/require-node';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  BucketClient,
  configOrExit,
  listKeys,
  type Outcome,
  parseWarmLine,
  runMain,
  StartupError,
  type WarmBucket,
  type WarmConfig,
  warm,
} from '@imgproxy-cache/shared';
import { SingleBar } from 'cli-progress';
import { Pool, request } from 'undici';

// `npm run warm -- <file|-> [--proxy URL] [--concurrency N] [--rate N] [--failures FILE]`: renders
// and stores a list of images through the proxy (warm.ts), with progress. Exit 0 when every path
// is in the bucket, 1 when some are not (the summary says why), 2 for bad input, 130 on Ctrl-C
// (the paths in flight finish first).

const USAGE =
  'usage: npm run warm -- <file, or - for stdin> [--proxy URL] [--concurrency N] [--rate N per second] [--failures FILE] [--list | --no-list] [--land-timeout SECONDS]';

/** Longer lists are checked against a listing of S3_FOLDER/ instead of a HEAD per path (bench/PROFILE.md). */
const LIST_FROM = 1_000;

function options() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        proxy: { type: 'string' },
        concurrency: { type: 'string', default: '4' },
        rate: { type: 'string' },
        failures: { type: 'string' },
        list: { type: 'boolean' },
        'no-list': { type: 'boolean' },
        'land-timeout': { type: 'string', default: '60' },
      },
    });
  } catch (error) {
    throw new StartupError(`${(error as Error).message}\n${USAGE}`);
  }
}

function number(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) throw new StartupError(`--${name} must be a number of at least ${min}, got "${value}"`);
  return n;
}

function readList(file: string): string[] {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8').split('\n');
  } catch (error) {
    throw new StartupError(`cannot read ${file === '-' ? 'standard input' : file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** The bucket through the uploaders' own client: a HEAD per object, or a listing of the folder. */
function bucketOf(config: WarmConfig): { bucket: WarmBucket; close(): Promise<void> } {
  const client = new BucketClient(config.s3, { sockets: 16 });
  const bucket: WarmBucket = {
    async exists(key) {
      try {
        return (await client.headObject(key, { signal: AbortSignal.timeout(10_000) })) !== undefined;
      } catch {
        return undefined;
      }
    },
    async keys(prefix, maxPages) {
      const keys = await listKeys(client, prefix, maxPages);
      return keys && new Set(keys);
    },
  };
  return { bucket, close: async () => client.close() };
}

/** The proxy's count of images it skipped (backlog full, Redis away), from its /metrics. */
function skippedCounter(metricsUrl: string | undefined): (() => Promise<number | undefined>) | undefined {
  if (!metricsUrl) return undefined;
  return async () => {
    try {
      const res = await request(metricsUrl, { headersTimeout: 2_000, bodyTimeout: 2_000 });
      const text = await res.body.text();
      let n = 0;
      for (const m of text.matchAll(/^imgproxy_cache_cache_decisions_total\{[^}]*outcome="(backlog-full|redis-busy|redis-down|timeout)"[^}]*\} (\S+)/gm))
        n += Number(m[2]);
      return n;
    } catch {
      return undefined;
    }
  };
}

const hostOf = (bind: WarmConfig['proxy']['bind']) => (bind.host === undefined || bind.host === '0.0.0.0' || bind.host === '::' ? '127.0.0.1' : bind.host);

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'warm');
  const { values, positionals } = options();
  if (positionals.length !== 1) throw new StartupError(USAGE);
  const concurrency = number('concurrency', values.concurrency, 1)!;
  const rate = number('rate', values.rate, 0.01);
  const landTimeoutMs = number('land-timeout', values['land-timeout'], 1)! * 1000;

  const lines = readList(positionals[0]!);
  const targets: string[] = [];
  const problems: string[] = [];
  lines.forEach((line, i) => {
    const parsed = parseWarmLine(line);
    if (parsed === undefined) return;
    if ('problem' in parsed) problems.push(`line ${i + 1}: ${parsed.problem}`);
    else targets.push(parsed.target);
  });
  if (problems.length > 0) throw new StartupError(problems.slice(0, 10).join('\n'));
  if (targets.length === 0) throw new StartupError(`${positionals[0]} names no image: one path per line (blank lines and # comments are skipped)`);

  const proxyUrl = values.proxy ?? `http://${hostOf(config.proxy.bind)}:${config.proxy.bind.port}`;
  let origin: URL;
  try {
    origin = new URL(proxyUrl);
  } catch {
    throw new StartupError(`--proxy must be a URL, got "${proxyUrl}"`);
  }
  const proxy = new Pool(origin.origin, { connections: concurrency });
  // a proxy that does not answer is bad input, said before anything starts
  try {
    const probe = await proxy.request({ method: 'GET', path: '/health', headersTimeout: 5_000, bodyTimeout: 5_000 });
    await probe.body.arrayBuffer();
  } catch (error) {
    await proxy.destroy();
    throw new StartupError(`the proxy at ${origin.origin} does not answer (${(error as Error).message}): start it, or give --proxy`);
  }

  const { bucket, close } = bucketOf(config);
  const metrics = config.metricsBind ? `http://${hostOf(config.metricsBind)}:${config.metricsBind.port}/metrics` : undefined;
  const list = values['no-list'] ? false : (values.list ?? targets.length >= LIST_FROM);

  const stop = new AbortController();
  process.on('SIGINT', () => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
    console.error('warm: interrupted: finishing the images in flight (Ctrl-C again to quit at once)');
  });

  const counts = { rendered: 0, stored: 0, failed: 0 };
  const startedAt = Date.now();
  const tty = process.stderr.isTTY === true;
  const bar = tty
    ? new SingleBar({ format: 'warm {bar} {value}/{total} | {speed}/s | ETA {eta_formatted} | failed {failed}', hideCursor: true, stream: process.stderr })
    : undefined;
  bar?.start(targets.length, 0, { speed: '0.0', failed: 0 });
  if (!tty) console.error(`warm: ${targets.length} paths, ${concurrency} at a time${rate ? `, ${rate} per second at most` : ''}, to ${origin.origin}`);
  const line = () => {
    const done = counts.rendered + counts.stored + counts.failed;
    const perSecond = counts.rendered / Math.max(0.001, (Date.now() - startedAt) / 1000);
    const eta = perSecond > 0 ? Math.round((targets.length - done) / perSecond) : undefined;
    return { done, perSecond, eta };
  };
  const ticker = tty
    ? undefined
    : setInterval(() => {
        const { done, perSecond, eta } = line();
        console.error(
          `warm: ${done}/${targets.length} done (${counts.rendered} rendered, ${counts.stored} already stored, ${counts.failed} not stored), ${perSecond.toFixed(1)}/s, ETA ${eta === undefined ? '?' : `${eta} s`}`,
        );
      }, 5_000);
  const onOutcome = (outcome: Outcome) => {
    counts[outcome.result] += 1;
    bar?.update(counts.rendered + counts.stored + counts.failed, { speed: line().perSecond.toFixed(1), failed: counts.failed });
  };

  try {
    const summary = await warm({
      targets,
      proxy,
      bucket,
      folder: config.s3.folder,
      concurrency,
      rate,
      list,
      landTimeoutMs,
      maxBytes: config.proxy.cacheMaxBytes,
      skipped: skippedCounter(metrics),
      signal: stop.signal,
      onOutcome,
    });
    bar?.stop();
    clearInterval(ticker);
    const failed = summary.outcomes.filter((o): o is Extract<Outcome, { result: 'failed' }> => o.result === 'failed');
    const byReason = new Map<string, number>();
    for (const f of failed) byReason.set(f.reason, (byReason.get(f.reason) ?? 0) + 1);
    console.log(`warm: ${targets.length} paths in ${(summary.elapsedMs / 1000).toFixed(1)} s`);
    console.log(`  rendered and stored: ${counts.rendered}`);
    console.log(`  already stored: ${counts.stored}`);
    console.log(`  not stored: ${failed.length}`);
    for (const [reason, n] of byReason) console.log(`    ${n} × ${reason}`);
    for (const f of failed.slice(0, 20)) console.log(`    ${f.path}: ${f.reason}`);
    if (summary.notStarted > 0) console.log(`  not started (interrupted): ${summary.notStarted}; run the same list again to finish it`);
    if (values.failures) {
      const left = [...failed.map((f) => f.path), ...notStarted(targets, summary.outcomes)];
      writeFileSync(values.failures, left.length > 0 ? `${left.join('\n')}\n` : '');
    }
    process.exitCode = stop.signal.aborted ? 130 : failed.length > 0 || summary.notStarted > 0 ? 1 : 0;
  } finally {
    bar?.stop();
    clearInterval(ticker);
    await proxy.close();
    await close();
  }
}

/** The targets without an outcome, in list order. */
function notStarted(targets: readonly string[], outcomes: readonly Outcome[]): string[] {
  const seen = new Set(outcomes.map((o) => o.path));
  return targets.filter((t) => !seen.has(t));
}

runMain('warm', () =>
  main().catch((error: Error) => {
    if (error instanceof StartupError) throw error;
    console.error(`imgproxy-cache warm: ${error.message}`);
    process.exitCode = 1;
  }),
);
