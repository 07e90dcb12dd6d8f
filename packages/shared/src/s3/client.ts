import { AsyncLocalStorage } from 'node:async_hooks';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentityProvider, HttpHandlerOptions } from '@smithy/types';
import type { Config } from '../config/index.js';

// The process's S3Client (@aws-sdk/client-s3), configured once for cost: the middleware cache (so
// no per-call options, which would turn it off), keep-alive sockets sized to the work, checksums
// from S3_CHECKSUM_MODE, one retry of a transient failure (BullMQ's backoff does the rest).

const deadlines = new AsyncLocalStorage<AbortSignal>();

/**
 * Runs `send` with `signal` ending its S3 requests. smithy's Client.send drops its middleware cache
 * for any call given options (an abortSignal among them), so the signal reaches the request
 * handler through the async context instead.
 */
export function withSignal<T>(signal: AbortSignal, send: () => Promise<T>): Promise<T> {
  return deadlines.run(signal, send);
}

/** The SDK's node:http handler, ending a request when the signal of its async context fires. */
class SignalledHandler extends NodeHttpHandler {
  override handle(request: Parameters<NodeHttpHandler['handle']>[0], options: HttpHandlerOptions = {}) {
    const signal = deadlines.getStore();
    return super.handle(request, signal ? { ...options, abortSignal: signal } : options);
  }
}

export interface S3ClientOptions {
  /** the credential chain (tests give fixed keys); default: the SDK's (environment, ~/.aws, IAM roles, web identity) */
  credentials?: AwsCredentialIdentityProvider;
  /** requests this user makes at once: the process's sockets grow by it */
  sockets?: number;
}

interface Shared {
  client: S3Client;
  agents: [HttpAgent, HttpsAgent];
  users: number;
}

const clients = new Map<string, Shared>();

/**
 * The S3Client for this configuration, made on first use and shared by every user in the process
 * (the proxy and the uploader in one process); its sockets grow by each user's `sockets`. Give it
 * back with releaseS3Client.
 */
export function acquireS3Client(s3: Config['s3'], options: S3ClientOptions = {}): S3Client {
  const key = options.credentials ? undefined : JSON.stringify(s3);
  const sockets = options.sockets ?? 16;
  const known = key === undefined ? undefined : clients.get(key);
  if (known) {
    known.users += 1;
    for (const agent of known.agents) agent.maxSockets += sockets;
    return known.client;
  }
  const agents: [HttpAgent, HttpsAgent] = [new HttpAgent({ keepAlive: true, maxSockets: sockets }), new HttpsAgent({ keepAlive: true, maxSockets: sockets })];
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    credentials: options.credentials,
    cacheMiddleware: true,
    maxAttempts: 2,
    requestChecksumCalculation: s3.checksumMode,
    responseChecksumValidation: s3.checksumMode,
    requestHandler: new SignalledHandler({
      httpAgent: agents[0],
      httpsAgent: agents[1],
      connectionTimeout: s3.requestTimeoutMs,
      requestTimeout: s3.requestTimeoutMs,
      socketTimeout: s3.requestTimeoutMs,
      throwOnRequestTimeout: true,
    }),
  });
  if (key !== undefined) clients.set(key, { client, agents, users: 1 });
  else owned.add(client);
  return client;
}

/** Clients made for one user (given credentials): destroyed on release. */
const owned = new WeakSet<S3Client>();

/** One user is done with `client`: the last one ends its sockets. */
export function releaseS3Client(client: S3Client): void {
  if (owned.has(client)) {
    client.destroy();
    return;
  }
  for (const [key, shared] of clients) {
    if (shared.client !== client) continue;
    shared.users -= 1;
    if (shared.users === 0) {
      clients.delete(key);
      client.destroy();
    }
    return;
  }
}
