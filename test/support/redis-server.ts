import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';
import { waitFor } from './wait.js';

// A Redis of the tests' own: REDIS_URL when set; else a redis-server child on a free port (never
// the machine's shared one); else, where a Docker engine runs, a container via testcontainers@11.

export interface TestRedis {
  url: string;
  port: number | undefined;
  /** the child, when we spawned one (fault tests kill and restart it) */
  child: ChildProcess | undefined;
  stop(): Promise<void>;
}

export function haveRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** `extra` arguments come last, so they override the defaults (`--maxmemory-policy allkeys-lru`). */
export async function spawnRedisServer(port?: number, extra: string[] = []): Promise<TestRedis> {
  const p = port ?? (await freePort());
  const child = spawn(
    'redis-server',
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', ...extra],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${p}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG';
      } finally {
        probe.disconnect();
      }
    },
    { what: `redis-server on port ${p}`, timeoutMs: 10_000 },
  );
  return {
    url,
    port: p,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function dockerRedis(): Promise<TestRedis> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const container = await new GenericContainer('redis:7.4-alpine')
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start();
  return {
    url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
    port: undefined,
    child: undefined,
    async stop() {
      await container.stop();
    },
  };
}

export async function startTestRedis(): Promise<TestRedis> {
  if (process.env.REDIS_URL) {
    return { url: process.env.REDIS_URL, port: undefined, child: undefined, stop: async () => undefined };
  }
  if (haveRedisServer()) return spawnRedisServer();
  try {
    return await dockerRedis();
  } catch (error) {
    throw new Error(
      `The tests need Redis: install redis-server (apt-get install -y redis-server), set REDIS_URL, or run a Docker engine (${(error as Error).message})`,
    );
  }
}
