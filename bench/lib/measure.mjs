// What a load costs, per image: CPU from /proc for each process, Redis's CPU and commands from INFO.
import { cpuSeconds, until } from './proc.mjs';
import { commandsBetween, redisStats } from './redis-stats.mjs';

/**
 * Runs `load` and measures, per image: the CPU of every process in `pids` (the uploader's and
 * Redis's until `stack`'s backlog is drained), Redis's CPU and commands by name.
 */
export async function measure(bench, pids, load, stack) {
  const redis = bench.redis.client;
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid, true)]));
  const redis0 = await redisStats(redis);
  const decisions0 = stack ? await stack.decisions() : undefined;
  const result = await load();
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid, true) - cpu0[k]]));
  if (stack) {
    await until(async () => (await stack.backlog()) === 0, 'the uploads to drain', 600_000, 100);
    for (const k of stack.uploading) cpu[k] = cpuSeconds(pids[k], true) - cpu0[k];
  }
  const redis1 = await redisStats(redis);
  let teed;
  if (stack) {
    const d1 = await stack.decisions();
    teed = (d1.queued ?? 0) - (decisions0.queued ?? 0);
  }
  const n = Math.max(1, result.images);
  const commands = commandsBetween(redis0, redis1);
  return {
    ...result,
    teed,
    failed: stack ? await stack.failed() : undefined,
    cpuMsPerImage: Object.fromEntries(Object.entries(cpu).map(([k, s]) => [k, (s * 1000) / n])),
    redisMsPerImage: stack ? ((redis1.cpu - redis0.cpu) * 1000) / n : undefined,
    commandsPerImage: stack ? Object.values(commands).reduce((a, b) => a + b, 0) / n : undefined,
    commands: Object.fromEntries(
      Object.entries(commands)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => [k, v / n]),
    ),
  };
}
