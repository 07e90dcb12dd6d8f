import { crc32 } from 'node:zlib';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { type Dispatcher, Pool } from 'undici';
import type { Config } from './config.js';
import { SigV4Signer } from './sigv4.js';

// Sends one S3 request: signed with SigV4 (sigv4.ts) with the AWS SDK's credential chain (the
// environment, ~/.aws, IAM roles, web identity), sent with an undici Pool. The SDK's client costs
// about twice the CPU per upload of this (bench/PROFILE.md), and uploads are all this service does.
// Behaviour kept from the SDK client: one retry of a transient failure (network, time-out, 5xx,
// 429), requests bounded by S3_REQUEST_TIMEOUT_MS, S3's error code and message in every error.

export class S3OperationError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly code: string,
  ) {
    super(message);
    this.name = 'S3OperationError';
    // BullMQ keeps the stack as the failed job's trace: the reason alone is what an operator needs.
    this.stack = `${this.name}: ${message}`;
  }

  /** 503 SlowDown and friends: the provider asks us to slow down, not to give up. */
  get throttled(): boolean {
    return this.status === 429 || this.code === 'SlowDown' || this.code === 'Throttling' || this.code === 'TooManyRequests';
  }
}

export interface S3Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface S3Request {
  /** for messages: PutObject, HeadObject, GetObject */
  operation: string;
  method: 'PUT' | 'HEAD' | 'GET' | 'DELETE';
  /** the object's key; '' for the bucket itself (CreateBucket, HeadBucket, PutBucketPolicy) */
  key: string;
  /** sub-resources and parameters (`{ policy: '' }` for `?policy`) */
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer;
  /** shorter than S3_REQUEST_TIMEOUT_MS (a health check's) */
  timeoutMs?: number;
  /** ends the request (a deadline for the whole of it) */
  signal?: AbortSignal;
  /** false: no second attempt (a read that has a deadline of its own) */
  retry?: boolean;
  /** the longest body read (a longer one is an error, not read) */
  maxBodyBytes?: number;
}

/** An S3 key in a URL: every segment percent-encoded as RFC 3986 wants (S3 signs it so). */
export function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

export interface BucketClientOptions {
  /** the credential chain (tests give fixed keys); default: the AWS SDK's */
  credentials?: AwsCredentialIdentityProvider;
  /** where requests go (tests); default: a Pool to the endpoint */
  dispatcher?: Dispatcher;
  /** connections the Pool may open */
  connections?: number;
}

export class BucketClient {
  readonly bucket: string;
  private readonly signer: SigV4Signer;
  private readonly dispatcher: Dispatcher;
  private readonly origin: URL;
  /** prefix of every request path: the endpoint's own path, and the bucket in path style */
  private readonly basePath: string;
  private readonly timeoutMs: number;
  private readonly checksums: boolean;

  constructor(s3: Config['s3'], options: BucketClientOptions = {}) {
    this.bucket = s3.bucket;
    const endpoint = new URL(s3.endpoint);
    const endpointPath = endpoint.pathname.replace(/\/+$/, '');
    if (s3.forcePathStyle) {
      this.origin = new URL(endpoint.origin);
      this.basePath = `${endpointPath}/${encodeKey(s3.bucket)}`;
    } else {
      this.origin = new URL(`${endpoint.protocol}//${s3.bucket}.${endpoint.host}`);
      this.basePath = endpointPath;
    }
    this.timeoutMs = s3.requestTimeoutMs;
    this.checksums = s3.checksumMode === 'WHEN_SUPPORTED';
    this.signer = new SigV4Signer(options.credentials ?? defaultProvider(), s3.region);
    this.dispatcher =
      options.dispatcher ??
      new Pool(this.origin.origin, { connections: options.connections ?? 16, connect: { timeout: s3.requestTimeoutMs }, keepAliveTimeout: 30_000 });
  }

  /** The path a request for `key` goes to (for tests and logs); '' is the bucket. */
  pathOf(key: string): string {
    return key === '' ? this.basePath || '/' : `${this.basePath}/${encodeKey(key)}`;
  }

  /** Sends `request`, once more after a transient failure; an S3OperationError for anything else but 2xx/3xx/404/412. */
  async send(request: S3Request): Promise<S3Response> {
    try {
      return await this.attempt(request);
    } catch (error) {
      if (request.retry === false || !(error instanceof S3OperationError) || !transient(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 100));
      return this.attempt(request);
    }
  }

  private async attempt({
    operation,
    method,
    key,
    query = {},
    headers = {},
    body,
    timeoutMs = this.timeoutMs,
    signal,
    maxBodyBytes,
  }: S3Request): Promise<S3Response> {
    const path = this.pathOf(key);
    const search = Object.entries(query)
      .map(([name, value]) => (value === '' ? encodeKey(name) : `${encodeKey(name)}=${encodeKey(value)}`))
      .join('&');
    const unsigned: Record<string, string> = { host: this.origin.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers };
    if (body) {
      unsigned['content-length'] = String(body.length);
      if (this.checksums) unsigned['x-amz-checksum-crc32'] = crc32Base64(body);
    }
    let signed: Record<string, string>;
    try {
      signed = await this.signer.sign({ method, path, headers: unsigned, query });
    } catch (error) {
      throw new S3OperationError(`${operation} could not be signed: ${(error as Error).message} (AWS credentials)`, undefined, 'CredentialsError');
    }
    let response: Dispatcher.ResponseData;
    let responseBody: Buffer;
    try {
      response = await this.dispatcher.request({
        origin: this.origin.origin,
        method,
        path: search === '' ? path : `${path}?${search}`,
        headers: signed,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal,
      });
      if (maxBodyBytes !== undefined && Number(response.headers['content-length'] ?? 0) > maxBodyBytes) {
        response.body.destroy();
        throw new S3OperationError(`${operation} answered more than ${maxBodyBytes} bytes`, response.statusCode, 'TooLarge');
      }
      responseBody = Buffer.from(await response.body.arrayBuffer());
    } catch (error) {
      if (error instanceof S3OperationError) throw error;
      throw networkError(operation, error);
    }
    const { statusCode: status, headers: responseHeaders } = response;
    if (status < 400 || status === 404 || status === 412) return { status, headers: responseHeaders, body: responseBody };
    throw s3Error(operation, status, responseBody);
  }

  /** Ends every connection, aborting requests still in flight (their uploads were handed back). */
  async close(): Promise<void> {
    await this.dispatcher.destroy();
  }
}

function transient(error: S3OperationError): boolean {
  if (error.status === undefined) return error.code !== 'CredentialsError';
  return error.status === 429 || (error.status >= 500 && error.status !== 501);
}

/** S3's error: `<Code>` and `<Message>` from the XML body (HEAD has none: the status says it). */
export function s3Error(operation: string, status: number, body: Buffer): S3OperationError {
  const text = body.toString('utf8');
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? STATUS_CODES[status] ?? `Http${status}`;
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? 'no message';
  return new S3OperationError(`${operation} ${status} ${code}: ${message}`, status, code);
}

/** What the SDK names a status without an S3 error body (a HEAD's). */
const STATUS_CODES: Record<number, string> = {
  400: 'BadRequest',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'Conflict',
  412: 'PreconditionFailed',
  503: 'ServiceUnavailable',
};

function networkError(operation: string, error: unknown): S3OperationError {
  const e = error as Error & { code?: string };
  if (e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || e?.code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new S3OperationError(`${operation} timed out (S3_REQUEST_TIMEOUT_MS)`, undefined, 'Timeout');
  }
  const code = e?.code ?? e?.name ?? 'Error';
  return new S3OperationError(`${operation} network error ${code}: ${e?.message ?? String(error)}`, undefined, code);
}

function crc32Base64(body: Buffer): string {
  const value = Buffer.allocUnsafe(4);
  value.writeUInt32BE(crc32(body));
  return value.toString('base64');
}
