import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

// The built services as child processes, configured only by environment variables, as users run
// them (`npm run start:proxy`, `npm run start:uploader`, `npm start`).

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Service {
  child: ChildProcess;
  output(): string;
  /** the JSON log lines so far */
  logs(): Record<string, unknown>[];
  /** resolves with the first line of output that matches */
  line(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited(timeoutMs?: number): Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * `detached` (the default): a process group of its own, so that stop() ends what it started too (npm
 * start's services and Redis; a SIGKILL to npm start alone would leave them running); `command`:
 * another program than node (given whole, `args` then unused).
 */
export function spawnService(
  args: string[],
  env: Record<string, string>,
  { detached = true, command }: { detached?: boolean; command?: string[] } = {},
): Service {
  const [program, ...programArgs] = command ?? [process.execPath, ...args];
  const child = spawn(program!, programArgs, {
    detached,
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', METRICS_BIND: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    line: (pattern, timeoutMs = 15_000) => waitFor(() => out.split('\n').find((l) => pattern.test(l)), { timeoutMs, what: `output matching ${pattern}` }),
    exited: (timeoutMs = 15_000) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms:\n${out}`)), timeoutMs);
      });
      return Promise.race([exit, deadline]).finally(() => clearTimeout(timer));
    },
    async stop() {
      if (detached) {
        // the whole group: what it started too (services, its Redis)
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {}
      }
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exit;
      }
    },
  };
}
