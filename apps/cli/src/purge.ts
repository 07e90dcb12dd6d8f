import '@imgproxy-cache/shared/require-node';
import { parseArgs } from 'node:util';
import {
  configOrExit,
  createLogger,
  describePurge,
  describeSourcePurge,
  found,
  parsePurgeTarget,
  parseSource,
  runMain,
  StartupError,
  standalonePurger,
} from '@imgproxy-cache/shared';

// `npm run purge -- <image path or key> ...`: forgets images everywhere (purge.ts). Prints a line
// for each: what was removed, or that nothing was stored. `--source <url>` (repeatable) purges
// every stored variant of a source image; `--dry-run` lists them. Exit 0 when every one was
// found, 1 when some were not, 2 for input that names no image (nothing is purged then).

const USAGE =
  'usage: npm run purge -- <image path or key> ... (a path as clients request it, or its 32-hex-digit key), or --source <source URL> ... [--dry-run]';

function args() {
  try {
    return parseArgs({ allowPositionals: true, options: { source: { type: 'string', multiple: true }, 'dry-run': { type: 'boolean' } } });
  } catch (error) {
    throw new StartupError(`${(error as Error).message}\n${USAGE}`);
  }
}

async function main(): Promise<void> {
  const config = configOrExit(process.env, 'purge');
  const { values, positionals: inputs } = args();
  const sourceInputs = values.source ?? [];
  if (inputs.length === 0 && sourceInputs.length === 0) throw new StartupError(USAGE);
  const targets = inputs.map(parsePurgeTarget);
  const sources = sourceInputs.map((s) => parseSource(s, config.imgproxyBaseUrl));
  const problems = [...targets, ...sources].flatMap((t) => ('problem' in t ? [t.problem] : []));
  if (problems.length > 0) throw new StartupError(problems.join('\n'));

  const logger = createLogger('purge', 'warn');
  const { purger, redis, close } = standalonePurger(config);
  try {
    await redis.ready(logger, AbortSignal.timeout(10_000)).catch((error: Error) => {
      throw error.name === 'TimeoutError' || error.name === 'AbortError' ? new Error(`Redis (REDIS_URL) did not answer within 10 s`) : error;
    });
    let missing = 0;
    for (const target of targets) {
      if ('problem' in target) continue;
      const report = await purger.purge(target);
      console.log(describePurge(report));
      if (!found(report)) missing += 1;
    }
    for (const source of sources) {
      if ('problem' in source) continue;
      const result = await purger.purgeSource(source, values['dry-run'] === true);
      for (const line of describeSourcePurge(result)) console.log(line);
      if (result.variants.length === 0) missing += 1;
    }
    process.exitCode = missing > 0 ? 1 : 0;
  } finally {
    await close();
  }
}

runMain('purge', () =>
  main().catch((error: Error) => {
    if (error instanceof StartupError) throw error;
    // Redis or S3 failing: one line, not a stack trace
    console.error(`imgproxy-cache purge: ${error.message}`);
    process.exitCode = 1;
  }),
);
