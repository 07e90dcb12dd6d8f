// Redis's own view of a run: commands by name (INFO commandstats) and its CPU (INFO cpu).
export async function redisStats(redis) {
  const text = await redis.info('all');
  const commands = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) commands[m[1]] = Number(m[2]);
  const cpu = Number(/^used_cpu_sys:([\d.]+)/m.exec(text)[1]) + Number(/^used_cpu_user:([\d.]+)/m.exec(text)[1]);
  return { commands, cpu };
}

/** Commands run between two snapshots, by name, without the bench's own INFO calls. */
export function commandsBetween(before, after) {
  const out = {};
  for (const [name, calls] of Object.entries(after.commands)) {
    const n = calls - (before.commands[name] ?? 0);
    if (n > 0 && name !== 'info') out[name] = n;
  }
  return out;
}
