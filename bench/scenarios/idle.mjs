// Our services with nothing to do: the share of a core they use once the uploads are done.
import { paced, settle } from '../lib/load.mjs';
import { startStaticUpstream } from '../lib/pieces.mjs';
import { cpuSeconds, until } from '../lib/proc.mjs';
import { startStack } from '../lib/stack.mjs';

export async function idle(bench) {
  const { procs, say } = bench;
  const upstream = await startStaticUpstream(bench);
  const stack = await startStack(bench, 'npm start', upstream.url);
  await paced(bench, stack.url, 20, 1);
  await until(async () => (await stack.backlog()) === 0, 'the uploads', 60_000, 100);
  await settle();
  const before = Object.fromEntries(Object.entries(stack.pids).map(([k, pid]) => [k, cpuSeconds(pid, true)]));
  const seconds = 20;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  say('## Idle');
  say();
  say(
    `Share of one core used over ${seconds} s with nothing to do, from 15 s after the last upload: ${Object.entries(stack.pids)
      .map(([k, pid]) => `${k} ${(((cpuSeconds(pid, true) - before[k]) / seconds) * 100).toFixed(2)} %`)
      .join(', ')}.`,
  );
  say();
  await stack.stop();
  await procs.stop(upstream.child);
}
