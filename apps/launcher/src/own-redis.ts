import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { StartupError } from '@imgproxy-cache/shared';

// The Redis that `npm start` (and the all-in-one image) runs itself when REDIS_URL is not set: a
// redis-server child on a Unix socket in DATA_DIR (no TCP port), with an append-only file there
// (fsync every second) and noeviction. One per DATA_DIR: a lock file holds the owner's pid.

/** Why the Redis cannot run: said in one line, npm start exits 2. */
export class OwnRedisError extends StartupError {}

export interface OwnRedis {
  /** REDIS_URL for the services */
  url: string;
  pid: number | undefined;
  /** shuts it down cleanly (its append-only file synced) and releases DATA_DIR */
  stop(): Promise<void>;
}

export interface OwnRedisOptions {
  /** each of redis-server's lines, as the services' log entries */
  log(entry: { level: number; msg: string; service: 'redis' }): void;
  /** it exited without stop() asking it to */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
}

const LOCK = 'npm-start.pid';
const SOCKET = 'redis.sock';
/** a large append-only file takes a while to load */
const START_TIMEOUT_MS = 60_000;

/** Resolves true when a Redis answers PING on `socket` within `timeoutMs`. */
function answers(socket: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((done) => {
    const conn = connect(socket);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      conn.destroy();
      done(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    conn.on('connect', () => conn.write('PING\r\n'));
    conn.on('data', (d) => finish(d.toString().startsWith('+PONG')));
    conn.on('error', () => finish(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function cannotWrite(dir: string, error: unknown): OwnRedisError {
  const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new OwnRedisError(`DATA_DIR ${dir} cannot be written (${reason}): give npm start a directory it may write, or set REDIS_URL`);
}

/** Takes DATA_DIR for this process, or throws OwnRedisError saying why it cannot; returns the release. */
async function lock(dir: string, socket: string): Promise<() => void> {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (error) {
    throw cannotWrite(dir, error);
  }
  const file = resolve(dir, LOCK);
  let owner: number | undefined;
  try {
    owner = Number(readFileSync(file, 'utf8'));
  } catch {}
  if ((owner && owner !== process.pid && alive(owner)) || (await answers(socket))) {
    throw new OwnRedisError(`DATA_DIR ${dir} is in use by another npm start${owner ? ` (pid ${owner})` : ''} and its Redis: one npm start per directory`);
  }
  try {
    writeFileSync(file, String(process.pid));
  } catch (error) {
    throw cannotWrite(dir, error);
  }
  return () => rmSync(file, { force: true });
}

/**
 * Redis logs start and stop at its warning level too (`#`), which is all `--loglevel warning`
 * shows: those ordinary lines are info (30), real warnings stay warn (40).
 */
const ORDINARY = [
  /^oO0OoO0OoO0Oo Redis is starting/,
  /^Redis version=/,
  /^Configuration loaded/,
  /^Server initialized/,
  /^Received SIG\w+ scheduling shutdown/,
  /^User requested shutdown/,
  /^Redis is now ready to exit/,
];

/** One line of redis-server (`pid:role date time level message`) as a pino-like entry, or undefined for a blank one. */
export function redisLogLine(line: string): { level: number; msg: string } | undefined {
  const match = /^\d+:(?:\w \d+ \w+ \d{4} [\d:.]+ ([.\-*#]) |signal-handler \(\d+\) )?(.*)$/.exec(line);
  const marker = match?.[1];
  const msg = (match?.[2] ?? line).trim();
  if (msg === '') return undefined;
  const level = ORDINARY.some((pattern) => pattern.test(msg)) || marker === '*' ? 30 : marker === '-' || marker === '.' ? 20 : 40;
  return { level, msg };
}

const REDIS_ARGS = (dir: string, socket: string) => [
  '--port',
  '0',
  '--unixsocket',
  socket,
  '--unixsocketperm',
  '700',
  '--dir',
  dir,
  '--appendonly',
  'yes',
  '--appendfsync',
  'everysec',
  '--save',
  '',
  '--maxmemory-policy',
  'noeviction',
  '--loglevel',
  'warning',
  '--logfile',
  '',
];

/** Starts the Redis and resolves once it answers (its append-only file loaded). */
export async function startOwnRedis(dataDir: string, options: OwnRedisOptions): Promise<OwnRedis> {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error) {
    throw new OwnRedisError(
      'npm start runs its own Redis when REDIS_URL is not set, and redis-server is not installed: install Redis (apt-get install redis-server) or set REDIS_URL',
    );
  }
  const dir = resolve(dataDir);
  const socket = resolve(dir, SOCKET);
  const unlock = await lock(dir, socket);
  const child = spawn('redis-server', REDIS_ARGS(dir, socket), { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      const entry = redisLogLine(line);
      if (entry) options.log({ ...entry, service: 'redis' });
    });
  }
  let exited = false;
  let stopping = false;
  const exit = once(child, 'exit').then(([code, signal]) => {
    exited = true;
    unlock();
    if (!stopping) options.onExit(code as number | null, signal as NodeJS.Signals | null);
  });

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await answers(socket))) {
    if (exited) throw new OwnRedisError(`redis-server could not start in DATA_DIR ${dir}; its lines above say why`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new OwnRedisError(`redis-server did not answer within ${START_TIMEOUT_MS / 1000} s in DATA_DIR ${dir}`);
    }
    await sleep(50);
  }
  return {
    url: `unix://${socket}`,
    pid: child.pid,
    async stop() {
      stopping = true;
      if (exited) return;
      child.kill('SIGTERM'); // Redis syncs its append-only file and exits
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exit;
      clearTimeout(timer);
    },
  };
}
