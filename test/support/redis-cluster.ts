import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { waitFor } from './wait.js';

// A real Redis Cluster from the installed redis-server: 3 masters and 3 replicas on free ports,
// made with `redis-cli --cluster create`, each node a child process that a test may kill.

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  child: ChildProcess;
}

export interface TestCluster {
  /** seed nodes, as REDIS_URL takes them with REDIS_CLUSTER=true */
  url: string;
  nodes: ClusterNode[];
  /** port → role and served slot ranges, as the cluster sees it now */
  topology(): Promise<{ port: number; master: boolean; slots: [number, number][] }[]>;
  /** the master serving `slot` */
  masterOf(slot: number): Promise<number>;
  /** SIGSTOP: the node hangs, its sockets open (topology() no longer asks it) */
  pause(port: number): void;
  /** SIGCONT */
  resume(port: number): void;
  /** starts a node killed earlier again, with its identity: it rejoins as a replica */
  restart(port: number): Promise<void>;
  /** resolves once the cluster is ok on every live node and every replica has synced */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

/** A port whose cluster bus port (+10000) is free too. */
async function clusterPort(): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    if ((await free(port)) && (await free(port + 10_000))) return port;
  }
}

/** `nodeTimeoutMs`: cluster-node-timeout (a dead master's replica takes over about a second after it). */
export async function startRedisCluster({ nodeTimeoutMs = 1000 } = {}): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'imgproxy-cache-cluster-'));
  const nodes: ClusterNode[] = [];
  const spawnNode = (port: number) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        // replicas copy their master at once (by default a master waits 5 s for more replicas)
        '--repl-diskless-sync-delay',
        '0',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
  for (let i = 0; i < 6; i++) {
    const port = await clusterPort();
    nodes.push({ port, child: spawnNode(port) });
  }
  const ping = async (port: number) => {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } finally {
      r.disconnect();
    }
  };
  for (const { port } of nodes) await waitFor(() => ping(port), { what: `cluster node ${port}` });
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes']);

  const paused = new Set<number>();
  const topology = async () => {
    for (const { port, child } of nodes) {
      if (child.exitCode !== null || child.signalCode !== null || paused.has(port)) continue;
      const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      r.on('error', () => undefined);
      try {
        const shards = (await r.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        const out = new Map<number, { port: number; master: boolean; slots: [number, number][] }>();
        for (const n of nodes) out.set(n.port, { port: n.port, master: false, slots: [] });
        for (const [from, to, [, masterPort]] of shards) {
          const entry = out.get(masterPort)!;
          entry.master = true;
          entry.slots.push([from, to]);
        }
        return [...out.values()];
      } finally {
        r.disconnect();
      }
    }
    throw new Error('no cluster node answers');
  };
  const alive = () => nodes.filter(({ port, child }) => child.exitCode === null && child.signalCode === null && !paused.has(port));
  const settled = async () => {
    await waitFor(
      async () => {
        for (const { port } of alive()) {
          const r = new Redis(port, '127.0.0.1');
          r.on('error', () => undefined);
          try {
            if (!(await r.cluster('INFO')).includes('cluster_state:ok')) return false;
          } finally {
            r.disconnect();
          }
        }
        return true;
      },
      { what: 'the cluster to be ok', timeoutMs: 30_000 },
    );
    // a replica that has not copied its master yet cannot take over from it
    await waitFor(
      async () => {
        const live = new Set(alive().map((n) => n.port));
        for (const { port, master } of await topology()) {
          if (master || !live.has(port)) continue;
          const r = new Redis(port, '127.0.0.1');
          r.on('error', () => undefined);
          try {
            if (!(await r.info('replication')).includes('master_link_status:up')) return false;
          } finally {
            r.disconnect();
          }
        }
        return true;
      },
      { what: 'the replicas to be in sync', timeoutMs: 30_000 },
    );
  };
  await settled();

  return {
    url: nodes
      .slice(0, 3)
      .map((n) => `redis://127.0.0.1:${n.port}`)
      .join(','),
    nodes,
    topology,
    async masterOf(slot) {
      const master = (await topology()).find((t) => t.slots.some(([from, to]) => slot >= from && slot <= to));
      if (!master) throw new Error(`no master serves slot ${slot}`);
      return master.port;
    },
    pause(port) {
      nodes.find((n) => n.port === port)!.child.kill('SIGSTOP');
      paused.add(port);
    },
    resume(port) {
      nodes.find((n) => n.port === port)!.child.kill('SIGCONT');
      paused.delete(port);
    },
    async restart(port) {
      const node = nodes.find((n) => n.port === port)!;
      node.child = spawnNode(port);
      await waitFor(() => ping(port), { what: `cluster node ${port} back` });
    },
    settled,
    async stop() {
      for (const { child } of nodes) {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGKILL');
          await exited;
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
