import { randomUUID } from 'node:crypto';
import { cacheKeyOf, createWorkerRedis, type Redis, shardOf, shardQueueNames } from '@imgproxy-cache/shared';
import calculateSlot from 'cluster-key-slot';
import { afterEach, describe, expect, it } from 'vitest';
import { startRedisCluster, type TestCluster } from './support/redis-cluster.js';
import { type Service, spawnService } from './support/service.js';
import { type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// An uploader run as users run it (its own process) on a real 3+3 Redis Cluster with
// cluster-node-timeout 2000 and QUEUE_SHARDS=3: the master holding two of the three shards is
// killed again and again; after every promotion the uploader goes on taking every shard's jobs.

let cluster: TestCluster | undefined;
let stack: Stack | undefined;
let uploader: Service | undefined;
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && uploader) console.log('uploader', uploader.output().split('\n').slice(-40).join('\n'));
  await uploader?.stop();
  await stack?.stop();
  await cluster?.stop();
  cluster = stack = uploader = undefined;
});

const shardSlots = (queueName: string) => shardQueueNames(queueName, 3).map((q) => calculateSlot(`{${q}}`));

/** A queue name with two of its three shards on one master. */
async function pairedQueueName(c: TestCluster): Promise<string> {
  for (;;) {
    const name = `u-${randomUUID().slice(0, 8)}`;
    const masters = await Promise.all(shardSlots(name).map((slot) => c.masterOf(slot)));
    if (new Set(masters).size === 2) return name;
  }
}

/** The master serving the most of the queue's shards. */
async function busiestMaster(c: TestCluster, queueName: string): Promise<{ port: number; slots: number[] }> {
  const bySlot = await Promise.all(shardSlots(queueName).map(async (slot) => ({ slot, master: await c.masterOf(slot) })));
  const counts = new Map<number, number[]>();
  for (const { slot, master } of bySlot) counts.set(master, [...(counts.get(master) ?? []), slot]);
  const [port, slots] = [...counts].sort((a, b) => b[1].length - a[1].length)[0]!;
  return { port, slots };
}

describe('an uploader process through repeated Redis Cluster failovers', () => {
  it('takes every shard’s jobs after each of 5 failovers of the master holding two shards, on its own: 15 new images land each time with no restart by the watchdog', async () => {
    cluster = await startRedisCluster({ nodeTimeoutMs: 2000 });
    const c = cluster;
    const queueName = await pairedQueueName(c);
    stack = await startStack({ cluster: c.url, queueName, noUploader: true, env: { QUEUE_SHARDS: '3', CACHE_RECENT_KEYS: '0', LOG_LEVEL: 'info' } });
    const s = stack;
    uploader = spawnService(['apps/uploader/dist/index.js'], {
      REDIS_URL: c.url,
      REDIS_CLUSTER: 'true',
      QUEUE_NAME: queueName,
      QUEUE_SHARDS: '3',
      S3_BUCKET: s.bucket,
      S3_ENDPOINT: s.tap.endpoint,
      S3_REGION: 'us-east-1',
      UPLOAD_BACKOFF_MS: '50',
      // the watchdog would restart a stuck shard worker: not within this test, so the worker must come back by itself
      UPLOAD_STUCK_MS: '3600000',
      LOG_LEVEL: 'info',
    });
    await uploader.line(/Uploader started/);

    let n = 0;
    const next = () => `/sig/plain/https://example.com/failover-${n++}.jpg@png`;
    const serve = async (count: number) => {
      const images = Array.from({ length: count }, next);
      await Promise.all(images.map(async (p) => expect((await s.get(p)).body.equals(s.stub.imageFor(p))).toBe(true)));
      return images;
    };
    /** The proxy hands off to the cluster again: one new image after another until one is queued (those that are not never land). */
    const handsOff = async () => {
      for (;;) {
        const probe = next();
        expect((await s.get(probe)).body.equals(s.stub.imageFor(probe))).toBe(true);
        if ((await s.outcomeOf(probe)) === 'queued') return probe;
      }
    };
    for (const p of await serve(30)) await s.waitForObject(p);
    const rounds: string[] = [];
    for (let round = 1; round <= 5; round++) {
      await c.settled();
      const victim = await busiestMaster(c, queueName);
      expect(victim.slots.length).toBe(2);
      c.nodes.find((node) => node.port === victim.port)!.child.kill('SIGKILL');
      await waitFor(async () => (await c.masterOf(victim.slots[0]!)) !== victim.port, {
        what: `round ${round}: a replica to take over`,
        timeoutMs: 30_000,
        intervalMs: 100,
      });
      await c.settled();
      const promotedAt = Date.now();
      const images = [await handsOff(), ...(await serve(15))];
      const shards = new Set(images.map((p) => shardOf(cacheKeyOf(p), 3)));
      expect(shards.size).toBe(3);
      await waitFor(
        async () => {
          for (const p of images) if (!(await s.object(p))) return false;
          return true;
        },
        { what: `round ${round}: every image to land`, timeoutMs: 120_000 },
      );
      rounds.push(`round ${round}: landed ${Date.now() - promotedAt} ms after the promotion`);
      // the two shards of the lost master said so, once each way
      const said = (msg: string) => uploader!.logs().filter((l) => l.msg === msg).length;
      await waitFor(() => said('A shard worker reaches its Redis again: taking its jobs') === 2 * round, { what: `round ${round}: shards back` });
      expect(said('A shard worker lost its Redis: its jobs wait until it is back')).toBe(2 * round);
      expect(uploader!.output()).not.toMatch(/restarting it on a new connection/);
      await c.restart(victim.port);
    }
    console.log(rounds.join('\n'));
  }, 300_000);
});

describe('the workers’ connections to a Redis Cluster', () => {
  let client: Redis | undefined;
  afterEach(() => client?.disconnect());

  it('connect, and connect again, while the cluster says it has failed (a failover under way): connect() settles (ioredis#709)', async () => {
    cluster = await startRedisCluster();
    const c = cluster;
    // a master and its replica gone: CLUSTER INFO says cluster_state:fail from here on
    const topology = await c.topology();
    const master = topology.find((t) => t.master)!;
    const replicaOf = async (port: number) => {
      const { Redis: Standalone } = await import('ioredis');
      for (const t of topology.filter((n) => !n.master)) {
        const r = new Standalone(t.port, '127.0.0.1');
        try {
          if ((await r.info('replication')).includes(`master_port:${port}`)) return t.port;
        } finally {
          r.disconnect();
        }
      }
      throw new Error(`no replica of ${port}`);
    };
    const replica = await replicaOf(master.port);
    for (const port of [replica, master.port]) c.nodes.find((n) => n.port === port)!.child.kill('SIGKILL');
    const alive = c.nodes.find((n) => n.port !== replica && n.port !== master.port)!;
    const { Redis: Standalone } = await import('ioredis');
    const probe = new Standalone(alive.port, '127.0.0.1');
    await waitFor(async () => (await probe.cluster('INFO')).includes('cluster_state:fail'), { what: 'the cluster to say it failed', timeoutMs: 20_000 });
    probe.disconnect();

    client = createWorkerRedis(`redis://127.0.0.1:${alive.port}`, { cluster: true });
    await waitFor(() => client!.status === 'ready', { what: 'the connection to be ready' });
    // what BullMQ does to reset a worker's blocking connection
    client.disconnect();
    await waitFor(() => client!.status === 'end', { what: 'the connection to end' });
    let settled = false;
    void client.connect().finally(() => (settled = true));
    await waitFor(() => settled, { what: 'connect() to settle' });
    expect(client.status).toBe('ready');
  }, 60_000);
});
