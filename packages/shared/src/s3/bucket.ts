import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutBucketPolicyCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Config } from '../config/index.js';
import { acquireS3Client, releaseS3Client, type S3ClientOptions, withSignal } from './client.js';
import { operationError, S3OperationError, type Whereabouts } from './errors.js';

// The bucket as this tool uses it: the few S3 operations it makes, through the SDK, each with a
// one-line error (errors.ts) and the answers it expects (404 is "absent", 412 under If-None-Match
// is "exists"). Nothing but a 2xx is a store.

/** What S3 says of an object (HEAD or GET). */
export interface ObjectInfo {
  size: number;
  /** as S3 sent it, quoted; the MD5 of the bytes for a single-part upload without SSE-KMS */
  etag: string | undefined;
  lastModified: Date | undefined;
  contentType: string | undefined;
  cacheControl: string | undefined;
  contentDisposition: string | undefined;
  /** x-amz-meta-* without the prefix */
  metadata: Record<string, string>;
}

export interface StoredBytes {
  info: ObjectInfo;
  body: Buffer;
}

export interface PutObject {
  key: string;
  body: Buffer;
  contentType?: string | null;
  cacheControl?: string | null;
  contentDisposition?: string | null;
  /** hex MD5 of body: sent as Content-MD5, so S3 checks the bytes it stores */
  md5?: string;
  /** x-amz-meta-* (names without the prefix) */
  metadata?: Record<string, string>;
  /** refuse to overwrite an existing object (If-None-Match: *) */
  ifAbsent?: boolean;
}

/** Bounds of one read: a deadline for all of it, and the longest body read. */
export interface ReadLimits {
  /** ends the read (and its retry) */
  signal?: AbortSignal;
  /** a longer body is an error, not read */
  maxBytes?: number;
  /** the variable named when the signal ends it (S3_READ_TIMEOUT_MS...) */
  deadline?: string;
}

export class BucketClient {
  readonly bucket: string;
  readonly s3: S3Client;
  private readonly where: Whereabouts;
  private readonly storageClass: string | undefined;

  constructor(config: Config['s3'], options: S3ClientOptions = {}) {
    this.bucket = config.bucket;
    this.where = { endpoint: config.endpoint, region: config.region };
    this.storageClass = config.storageClass || undefined;
    this.s3 = acquireS3Client(config, options);
  }

  /** 'exists' when `ifAbsent` was set and the object was already there (412). */
  async putObject(object: PutObject): Promise<'written' | 'exists'> {
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: object.key,
      Body: object.body,
      ContentLength: object.body.length,
      ContentType: object.contentType ?? undefined,
      CacheControl: object.cacheControl ?? undefined,
      ContentDisposition: object.contentDisposition ?? undefined,
      ContentMD5: object.md5 ? Buffer.from(object.md5, 'hex').toString('base64') : undefined,
      Metadata: object.metadata,
      IfNoneMatch: object.ifAbsent ? '*' : undefined,
      StorageClass: this.storageClass as PutObjectCommand['input']['StorageClass'],
    });
    try {
      await this.s3.send(command);
      return 'written';
    } catch (error) {
      const e = this.error('PutObject', error);
      // 412: the object is there already (written before, or by another uploader just now)
      if (e.status === 412 && object.ifAbsent) return 'exists';
      // providers name a class they do not know differently (AWS InvalidStorageClass, Ceph InvalidArgument)
      if (this.storageClass && (e.code === 'InvalidStorageClass' || (e.status === 400 && e.code === 'InvalidArgument'))) {
        const why = e.code === 'InvalidStorageClass' ? 'the provider refuses it' : 'the provider may not know it';
        throw new S3OperationError(`${e.message} (S3_STORAGE_CLASS=${this.storageClass}: ${why})`, e.status, e.code);
      }
      throw e;
    }
  }

  /** The object's metadata, or undefined when there is none (404). */
  async headObject(key: string, limits: ReadLimits = {}): Promise<ObjectInfo | undefined> {
    const command = new HeadObjectCommand({ Bucket: this.bucket, Key: key });
    try {
      return infoOf(await within(limits.signal, () => this.s3.send(command)));
    } catch (error) {
      const e = this.error('HeadObject', error, limits.deadline);
      // a HEAD's 404 has no body: a missing bucket reads as a missing object
      if (e.status === 404) return undefined;
      throw e;
    }
  }

  /** The object's bytes and metadata, or undefined when there is none (404 NoSuchKey; NoSuchBucket throws). */
  async getObject(key: string, limits: ReadLimits = {}): Promise<StoredBytes | undefined> {
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: key });
    try {
      const out = await within(limits.signal, () => this.s3.send(command));
      const info = infoOf(out);
      const stream = out.Body as NodeJS.ReadableStream & { destroy(): void };
      const max = limits.maxBytes ?? Number.POSITIVE_INFINITY;
      const tooLarge = () => {
        stream.destroy();
        return new S3OperationError(`GetObject answered more than ${max} bytes`, 200, 'TooLarge');
      };
      if (info.size > max) throw tooLarge();
      const chunks: Buffer[] = [];
      let length = 0;
      for await (const chunk of stream) {
        length += (chunk as Buffer).length;
        if (length > max) throw tooLarge(); // sent without a length
        chunks.push(chunk as Buffer);
      }
      const body = Buffer.concat(chunks, length);
      return { info: { ...info, size: body.length }, body };
    } catch (error) {
      const e = this.error('GetObject', error, limits.deadline);
      if (e.status === 404 && e.code !== 'NoSuchBucket') return undefined;
      throw e;
    }
  }

  async deleteObject(key: string): Promise<void> {
    try {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      throw this.error('DeleteObject', error);
    }
  }

  /** HeadBucket's status (200, or S3's refusal: 301, 403, 404...); network errors throw. */
  async headBucket(signal?: AbortSignal): Promise<number> {
    try {
      await within(signal, () => this.s3.send(new HeadBucketCommand({ Bucket: this.bucket })));
      return 200;
    } catch (error) {
      const e = operationError('HeadBucket', error, this.where);
      if (e.status !== undefined) return e.status;
      throw e;
    }
  }

  /** Creates the bucket; outside us-east-1 (and Tigris's `auto`) the region is named in the request. */
  async createBucket(region: string): Promise<void> {
    const location = region === 'us-east-1' || region === 'auto' ? undefined : { LocationConstraint: region as never };
    try {
      await this.s3.send(new CreateBucketCommand({ Bucket: this.bucket, CreateBucketConfiguration: location }));
    } catch (error) {
      throw this.error('CreateBucket', error);
    }
  }

  async putBucketPolicy(policy: string): Promise<void> {
    try {
      await this.s3.send(new PutBucketPolicyCommand({ Bucket: this.bucket, Policy: policy }));
    } catch (error) {
      throw this.error('PutBucketPolicy', error);
    }
  }

  /** This user is done: the process's client ends its sockets once every user is. */
  close(): void {
    releaseS3Client(this.s3);
  }

  /** The SDK's error as one line; a redirect names S3_ENDPOINT and S3_REGION. */
  error(operation: string, error: unknown, deadline?: string): S3OperationError {
    return operationError(operation, error, this.where, deadline);
  }
}

/** `send`, ended by `signal` when there is one. */
function within<T>(signal: AbortSignal | undefined, send: () => Promise<T>): Promise<T> {
  return signal ? withSignal(signal, send) : send();
}

interface ObjectOutput {
  ContentLength?: number;
  ETag?: string;
  LastModified?: Date;
  ContentType?: string;
  CacheControl?: string;
  ContentDisposition?: string;
  Metadata?: Record<string, string>;
}

function infoOf(out: ObjectOutput): ObjectInfo {
  return {
    size: out.ContentLength ?? -1,
    etag: out.ETag,
    lastModified: out.LastModified,
    contentType: out.ContentType,
    cacheControl: out.CacheControl,
    contentDisposition: out.ContentDisposition,
    metadata: out.Metadata ?? {},
  };
}
