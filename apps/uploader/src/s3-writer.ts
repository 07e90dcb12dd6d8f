import { HeadBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client, type S3ClientConfig, S3ServiceException } from '@aws-sdk/client-s3';
import type { Config } from '@imgproxy-cache/shared';

// The only module that talks to S3. It turns SDK errors into one-line reasons an operator can act
// on ("PutObject 403 AccessDenied: Access Denied"), which BullMQ keeps as the failed job's reason.

/** `overrides` is for tests (explicit credentials); deployments use the SDK's default chain. */
export function createS3Client(config: Config, overrides: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    endpoint: config.s3.endpoint,
    region: config.s3.region,
    forcePathStyle: config.s3.forcePathStyle,
    // Non-AWS providers (R2, B2, older MinIO) reject the CRC32 checksums the SDK adds by default
    // since January 2025; Content-MD5 still protects the bytes.
    requestChecksumCalculation: config.s3.checksumMode,
    responseChecksumValidation: config.s3.checksumMode,
    // BullMQ retries with backoff; SDK retries would multiply with its attempts.
    maxAttempts: 2,
    // S3_REQUEST_TIMEOUT_MS bounds each attempt here, not with an abort signal per call: any
    // per-call option makes the SDK resolve the command's middleware stack again on every send,
    // 7 % of an uploader's CPU (bench/PROFILE.md). Nothing here changes a middleware stack, so the
    // resolved stack is cached per command class.
    requestHandler: { requestTimeout: config.s3.requestTimeoutMs, throwOnRequestTimeout: true },
    cacheMiddleware: true,
    ...overrides,
  });
}

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

  /** Errors no retry can fix (denied, no such bucket, bad request): they still get retried, but say so. */
  get permanent(): boolean {
    return this.status !== undefined && this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 409 && !this.throttled;
  }
}

export function describeS3Error(operation: string, error: unknown): S3OperationError {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata?.httpStatusCode;
    const message = error.message && error.message !== 'UnknownError' ? error.message : 'no message';
    return new S3OperationError(`${operation} ${status ?? '?'} ${error.name}: ${message}`, status, error.name);
  }
  const e = error as Error & { code?: string };
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') {
    return new S3OperationError(`${operation} timed out (S3_REQUEST_TIMEOUT_MS)`, undefined, 'Timeout');
  }
  const code = e?.code ?? e?.name ?? 'Error';
  return new S3OperationError(`${operation} network error ${code}: ${e?.message ?? String(error)}`, undefined, code);
}

export interface StoredObject {
  size: number;
  /** lowercase hex MD5 when the ETag is one (single-part upload without SSE-KMS) */
  md5: string | undefined;
}

export interface PutRequest {
  key: string;
  body: Buffer;
  contentType: string | null;
  cacheControl: string | null;
  contentDisposition: string | null;
  /** hex MD5 of body */
  md5: string;
  /** refuse to overwrite an existing object (If-None-Match: *) */
  ifAbsent: boolean;
}

export interface ObjectStore {
  readonly bucket: string;
  head(key: string): Promise<StoredObject | undefined>;
  /** 'exists' when `ifAbsent` was set and the object was already there (412). */
  put(request: PutRequest): Promise<'written' | 'exists'>;
  /** The endpoint answers and the bucket exists (403 counts: a key may put without listing). */
  reachable(): Promise<boolean>;
}

export class S3ObjectStore implements ObjectStore {
  /** `timeoutMs` bounds the readiness check; uploads are bounded by the client (createS3Client). */
  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    private readonly timeoutMs: number,
  ) {}

  async reachable(): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: AbortSignal.timeout(Math.min(this.timeoutMs, 3_000)) });
      return true;
    } catch (error) {
      return error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 403;
    }
  }

  async head(key: string): Promise<StoredObject | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      const etag = out.ETag?.replace(/"/g, '').toLowerCase();
      return { size: out.ContentLength ?? -1, md5: etag && /^[0-9a-f]{32}$/.test(etag) ? etag : undefined };
    } catch (error) {
      if (error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 404) return undefined;
      throw describeS3Error('HeadObject', error);
    }
  }

  async put(request: PutRequest): Promise<'written' | 'exists'> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: request.key,
          Body: request.body,
          ContentLength: request.body.length,
          ContentType: request.contentType ?? undefined,
          CacheControl: request.cacheControl ?? undefined,
          ContentDisposition: request.contentDisposition ?? undefined,
          // The server verifies the bytes it stored against this.
          ContentMD5: Buffer.from(request.md5, 'hex').toString('base64'),
          IfNoneMatch: request.ifAbsent ? '*' : undefined,
        }),
      );
      return 'written';
    } catch (error) {
      // 412: the object is there already (written before, or by another uploader just now).
      if (request.ifAbsent && error instanceof S3ServiceException && error.$metadata?.httpStatusCode === 412) return 'exists';
      throw describeS3Error('PutObject', error);
    }
  }
}
