import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type Socket } from 'node:net';

// A TCP relay in front of a Redis that can freeze connections: their bytes stop flowing both ways
// while the sockets stay open (a Redis that hangs, as seen by those clients only). Connections
// opened while frozen hang the same way. `spare` connections, the first ones made, keep flowing.
// It also counts round trips: what a client sends between two answers of the server is one burst,
// however TCP splits or merges it, so a pipeline written at once is one trip and its reply ends it.

export interface TcpTap {
  port: number;
  url: string;
  /** connections accepted so far */
  readonly accepted: number;
  /**
   * Client-to-server bursts so far, over every connection: bytes from a client that follow an
   * answer of the server (or open the connection) start one; more bytes before the next answer
   * belong to it.
   */
  readonly roundTrips: number;
  freeze(spare: number): void;
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpTap(targetPort: number): Promise<TcpTap> {
  const links: { index: number; client: Socket; upstream: Socket; held: Buffer[][] }[] = [];
  let frozen = false;
  let spare = 0;
  let accepted = 0;
  let roundTrips = 0;
  const flowing = (index: number) => !frozen || index < spare;
  const server: Server = createServer((client) => {
    const index = accepted++;
    const upstream = connect(targetPort, '127.0.0.1');
    const link = { index, client, upstream, held: [[], []] as Buffer[][] };
    links.push(link);
    // who sent last on this connection: a client's bytes after the server's start a round trip
    let serverLast = true;
    client.on('data', (chunk: Buffer) => {
      if (serverLast) roundTrips += 1;
      serverLast = false;
      if (flowing(index)) upstream.write(chunk);
      else link.held[0]!.push(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      serverLast = true;
      if (flowing(index)) client.write(chunk);
      else link.held[1]!.push(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    get roundTrips() {
      return roundTrips;
    },
    freeze(keep) {
      frozen = true;
      spare = keep;
    },
    thaw() {
      frozen = false;
      for (const link of links) {
        for (const chunk of link.held[0]!.splice(0)) link.upstream.write(chunk);
        for (const chunk of link.held[1]!.splice(0)) link.client.write(chunk);
      }
    },
    async close() {
      for (const { client, upstream } of links) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
