import { type Logger, type Redis, slotOf } from '@imgproxy-cache/shared';
import { Cluster } from 'ioredis';

// Each shard worker says once when its Redis goes away (the master serving its shard's slot, on a
// cluster) and once when it is back: an operator reading the log of a failover sees which shards
// stopped and that they resumed, without a line per failed command.

export function reportShardRedis(connection: Redis, shards: () => Iterable<string>, logger: Logger): void {
  const lost = new Map<string, string>(); // queue → the node it lost
  const gone = (queue: string, node: string) => {
    if (lost.has(queue)) return;
    lost.set(queue, node);
    logger.warn({ queue, node }, 'A shard worker lost its Redis: its jobs wait until it is back');
  };
  const back = (queue: string, node: string) => {
    if (!lost.has(queue)) return;
    lost.delete(queue);
    logger.info({ queue, node }, 'A shard worker reaches its Redis again: taking its jobs');
  };
  if (connection instanceof Cluster) {
    const masterOf = (queue: string) => connection.slots[slotOf(queue)]?.[0];
    connection.on('-node', (node: { options: { host?: string; port?: number } }) => {
      const address = `${node.options.host}:${node.options.port}`;
      for (const queue of shards()) if (masterOf(queue) === address) gone(queue, address);
    });
    // a new slot map: a shard whose slot another master serves now has its Redis again
    connection.on('refresh', () => {
      for (const [queue, node] of lost) {
        const master = masterOf(queue);
        if (master !== undefined && master !== node) back(queue, master);
      }
    });
  } else {
    const address = 'redis';
    connection.on('close', () => {
      for (const queue of shards()) gone(queue, address);
    });
    connection.on('ready', () => {
      for (const queue of [...lost.keys()]) back(queue, address);
    });
  }
}
