import { randomUUID } from 'node:crypto';
import { cacheKeyOf, createLogger, loadConfig, QueueRegistry, queuePrefix, shardOf, shardQueueNames } from '@imgproxy-cache/shared';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RunningProxy, startProxy } from '../apps/proxy/src/server/start-proxy.js';
import { startRedisCluster, type TestCluster } from './support/redis-cluster.js';
import { type Stack, startStack } from './support/stack.js';
import { waitFor } from './support/wait.js';

// On a real Redis Cluster (3 masters, 3 replicas, from the installed redis-server): every script
// and every BullMQ queue touches one slot (a script that crossed slots would fail with CROSSSLOT
// here, while it works on one Redis), shards spread over the masters, and a master that dies is
// replaced by its replica while proxies and uploaders carry on.

let cluster: TestCluster;
let stack: Stack | undefined;
const proxies: RunningProxy[] = [];
beforeAll(async () => {
  cluster = await startRedisCluster();
});
afterAll(async () => {
  await cluster?.stop();
});
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && stack) console.log('logs', JSON.stringify(stack.logs.slice(-50)), 'outcomes', stack.outcomes);
  await Promise.all(proxies.splice(0).map((p) => p.close(2_000)));
  await stack?.stop();
  stack = undefined;
});

/** A queue name whose `shards` queues are served by at least two masters. */
async function spreadQueueName(shards: number): Promise<string> {
  for (;;) {
    const name = `c-${randomUUID().slice(0, 8)}`;
    const masters = new Set<number>();
    for (const queue of shardQueueNames(name, shards)) masters.add(await cluster.masterOf(calculateSlot(`{${queue}}`)));
    if (masters.size >= 2) return name;
  }
}

/** Keys matching `pattern` on each master, by port. */
async function keysByMaster(pattern: string): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const { port, master } of await cluster.topology()) {
    if (!master) continue;
    const node = new Redis(port, '127.0.0.1');
    try {
      out.set(port, await node.keys(pattern));
    } finally {
      node.disconnect();
    }
  }
  return out;
}

const paths = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `/sig/plain/https://example.com/${prefix}-${i}.jpg@png`);

describe('on a Redis Cluster, with QUEUE_SHARDS=3', () => {
  it('spreads jobs and bytes over the masters, dedups across proxies, and lands every image once, byte-exact', async () => {
    const queueName = await spreadQueueName(3);
    stack = await startStack({ cluster: cluster.url, queueName, noUploader: true, env: { QUEUE_SHARDS: '3', CACHE_RECENT_KEYS: '0' } });
    const s = stack;
    const images = paths('spread', 12);
    for (const p of images) {
      expect((await s.get(p)).body.equals(s.stub.imageFor(p))).toBe(true);
      expect(await s.outcomeOf(p)).toBe('queued');
    }
    // each image's job and bytes sit in its shard's slot; the shards' slots are on two masters or more
    const withPayloads = [...(await keysByMaster(`${'bull:{'}${queueName}-*:payload:*`))].filter(([, keys]) => keys.length > 0);
    const withJobs = [...(await keysByMaster(`${'bull:{'}${queueName}-*:wait`))].filter(([, keys]) => keys.length > 0);
    expect(withPayloads.length).toBeGreaterThanOrEqual(2);
    expect(withJobs.length).toBeGreaterThanOrEqual(2);
    for (const p of images) {
      const shard = shardOf(cacheKeyOf(p), 3);
      const job = await s.queues[shard]!.getJob(cacheKeyOf(p));
      expect(await job?.getState()).toBe('waiting');
    }

    // a second proxy sends every image to the same shard: nothing is queued twice
    const second = await startProxy(s.config, createLogger('proxy', 'silent'));
    proxies.push(second);
    for (const p of images) await fetch(`http://127.0.0.1:${second.port}${p}`).then((r) => r.arrayBuffer());
    await waitFor(() => second.inflight.size === 0, { what: 'the second proxy’s hand-offs' });
    expect(await Promise.all(s.queues.map((q) => q.getJobCountByTypes('waiting')))).toEqual(
      [0, 1, 2].map((shard) => images.filter((p) => shardOf(cacheKeyOf(p), 3) === shard).length),
    );

    await s.startUploader();
    for (const p of images) expect((await s.waitForObject(p)).body.equals(s.stub.imageFor(p))).toBe(true);
    await s.drained();
    for (const p of images) expect(s.tap.puts().filter((r) => r.url.split('?')[0]!.endsWith(`/${cacheKeyOf(p)}`))).toHaveLength(1);
  });

  it('uploads the images queued under an earlier QUEUE_SHARDS, then stops working its queue', async () => {
    const queueName = `c-${randomUUID().slice(0, 8)}`;
    stack = await startStack({ cluster: cluster.url, queueName, noUploader: true, env: { QUEUE_SHARDS: '3' } });
    const s = stack;
    // a proxy still running with one shard sends its images to the queue QUEUE_NAME
    const env = {
      REDIS_CLUSTER: 'true',
      REDIS_URL: cluster.url,
      QUEUE_NAME: queueName,
      IMGPROXY_URL: s.stub.url,
      IMGPROXY_BIND: '127.0.0.1:0',
      METRICS_BIND: 'off',
    };
    const old = await startProxy(loadConfig(env, 'proxy'), createLogger('proxy', 'silent'));
    proxies.push(old);
    const images = paths('resharded', 4);
    for (const p of images) await fetch(`http://127.0.0.1:${old.port}${p}`).then((r) => r.arrayBuffer());
    await waitFor(() => old.inflight.size === 0, { what: 'the old proxy’s hand-offs' });
    const registry = new QueueRegistry(s.redis, queueName);
    await waitFor(async () => (await registry.names()).includes(queueName), { what: 'the old queue in the registry' });

    const uploader = await s.startUploader();
    expect([...uploader.queues.keys()].sort()).toEqual([queueName, ...shardQueueNames(queueName, 3)].sort());
    for (const p of images) expect((await s.waitForObject(p)).body.equals(s.stub.imageFor(p))).toBe(true);
    // drained: the next look forgets it
    await waitFor(
      async () => {
        await uploader.refreshQueues();
        return !uploader.queues.has(queueName);
      },
      { what: 'the old queue to be forgotten' },
    );
    expect(await registry.names()).not.toContain(queueName);
    await old.close(2_000);
    proxies.splice(proxies.indexOf(old), 1);
    const keysLeft = await keysByMaster(`${queuePrefix(queueName)}:${queueName}:wait`);
    expect([...keysLeft.values()].flat()).toEqual([]);
  });
});

describe('a master failing on a Redis Cluster, with the same proxy and uploader throughout', () => {
  let own: TestCluster | undefined;
  let victim: number | undefined;
  afterEach(async () => {
    if (own && victim !== undefined) own.resume(victim);
    await stack?.stop();
    stack = undefined;
    await own?.stop();
    own = victim = undefined;
  });

  /** `n` new image paths whose key falls on `shard` of 3 */
  const onShard = (tag: string, shard: number, n: number) => {
    const out: string[] = [];
    for (let i = 0; out.length < n; i++) {
      const p = `/sig/plain/https://example.com/${tag}-${i}.jpg@png`;
      if (shardOf(cacheKeyOf(p), 3) === shard) out.push(p);
    }
    return out;
  };

  /**
   * The master of shard 0 fails (`fail`) once its replica has synced; 15 new images of that shard
   * are requested, 5 at once and 10 right after the replica took over: every one lands without a
   * second request, each handed off once.
   */
  async function ridesOut(fail: (port: number) => void): Promise<void> {
    own = await startRedisCluster(); // returns once every replica has synced
    const queueName = `c-${randomUUID().slice(0, 8)}`;
    stack = await startStack({ cluster: own.url, queueName, env: { QUEUE_SHARDS: '3', UPLOAD_GATHER_MS: '0', CACHE_RECENT_KEYS: '0' } });
    const s = stack;
    for (const p of paths('warm', 3)) await s.get(p);
    for (const p of paths('warm', 3)) await s.waitForObject(p);

    const slot = calculateSlot(`{${shardQueueNames(queueName, 3)[0]}}`);
    victim = await own.masterOf(slot);
    const images = onShard('failover', 0, 15);
    const failedAt = Date.now();
    fail(victim);
    for (const p of images.slice(0, 5)) expect((await s.get(p)).body.equals(s.stub.imageFor(p))).toBe(true);
    await waitFor(async () => (await own!.masterOf(slot)) !== victim, { what: 'a replica to take over', timeoutMs: 20_000, intervalMs: 100 });
    const promotedMs = Date.now() - failedAt;
    for (const p of images.slice(5)) expect((await s.get(p)).body.equals(s.stub.imageFor(p))).toBe(true);

    for (const p of images) expect((await s.waitForObject(p)).body.equals(s.stub.imageFor(p))).toBe(true);
    const handedOff = s.logs
      .filter((l) => l.msg === 'Cache hand-off' && images.includes(String(l.path)))
      .map((l) => (typeof l.time === 'number' ? l.time : Date.parse(String(l.time))) - failedAt);
    console.log(`failover: replica promoted after ${promotedMs} ms; the last of the 15 hand-offs ${Math.max(...handedOff)} ms after the failure`);
    // one hand-off each: 'already-queued' when an attempt's answer was lost and the next found its job
    for (const p of images) expect(s.outcomes.filter((o) => o.path === p).map((o) => o.outcome)).toEqual([expect.stringMatching(/^(already-)?queued$/)]);
    for (const p of images) expect(s.stub.requests.filter((r) => r.url === p)).toHaveLength(1);
    for (const p of images) expect(s.tap.puts().filter((r) => r.url.split('?')[0]!.endsWith(`/${cacheKeyOf(p)}`))).toHaveLength(1);
  }

  it('SIGKILL: the replica takes over and every image requested during and right after the failover lands', async () => {
    await ridesOut((port) => own!.nodes.find((n) => n.port === port)!.child.kill('SIGKILL'));
  }, 90_000);

  it('SIGSTOP (a master that hangs, its sockets open): once its replica is promoted, every image lands', async () => {
    await ridesOut((port) => own!.pause(port));
  }, 90_000);
});
