import { type BucketClient, S3OperationError, s3Error } from '@imgproxy-cache/shared';

// The bucket as the uploader sees it: look at an object, write one, and say whether S3 accepts
// our requests at all. Errors carry one-line reasons an operator can act on
// ("PutObject 403 AccessDenied: Access Denied"), which BullMQ keeps as the failed job's reason.

export { S3OperationError };

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
  /** the tag of the image's source (image-source.ts), for CDNs in front of the bucket and `npm run reindex` */
  sourceTag?: string;
  /** refuse to overwrite an existing object (If-None-Match: *) */
  ifAbsent: boolean;
}

/** What a probe of the bucket found; `ok` when our requests are accepted. */
export interface Probe {
  ok: boolean;
  /** S3's error code (NoSuchBucket, InvalidAccessKeyId, ...), or the network error's */
  code?: string;
  message?: string;
}

export interface ObjectStore {
  readonly bucket: string;
  head(key: string): Promise<StoredObject | undefined>;
  /** 'exists' when `ifAbsent` was set and the object was already there (412). */
  put(request: PutRequest): Promise<'written' | 'exists'>;
  probe(timeoutMs?: number): Promise<Probe>;
}

/**
 * Codes that mean our requests are accepted: a key that does not exist, or keys that may write but
 * not read. A HEAD would not tell (a 403 to it has no body, so no code); a GET does.
 */
const ACCEPTED = new Set(['NoSuchKey', 'AccessDenied']);

/** A key no image ever has (images are `<folder><md5>`), for the probe's GET. */
const PROBE_KEY = 'imgproxy-cache-probe';

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;

  constructor(
    private readonly client: BucketClient,
    private readonly folder: string,
  ) {
    this.bucket = client.bucket;
  }

  /** `timeoutMs` bounds each attempt (a health check must answer quickly). */
  async probe(timeoutMs?: number): Promise<Probe> {
    try {
      const { status, body } = await this.client.send({ operation: 'GetObject', method: 'GET', key: `${this.folder}${PROBE_KEY}`, timeoutMs });
      if (status !== 404) return { ok: true };
      const { code, message } = s3Error('GetObject', status, body);
      return { ok: ACCEPTED.has(code) || code === 'NotFound', code, message };
    } catch (error) {
      const e = error as S3OperationError;
      return { ok: ACCEPTED.has(e.code), code: e.code, message: e.message };
    }
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const { status, headers } = await this.client.send({ operation: 'HeadObject', method: 'HEAD', key });
    if (status === 404) return undefined;
    const etag = String(headers.etag ?? '')
      .replace(/"/g, '')
      .toLowerCase();
    const length = Number(headers['content-length']);
    return { size: Number.isFinite(length) ? length : -1, md5: /^[0-9a-f]{32}$/.test(etag) ? etag : undefined };
  }

  async put(request: PutRequest): Promise<'written' | 'exists'> {
    const headers: Record<string, string> = { 'content-md5': Buffer.from(request.md5, 'hex').toString('base64') };
    if (request.contentType) headers['content-type'] = request.contentType;
    if (request.cacheControl) headers['cache-control'] = request.cacheControl;
    if (request.contentDisposition) headers['content-disposition'] = request.contentDisposition;
    if (request.ifAbsent) headers['if-none-match'] = '*';
    if (request.sourceTag) headers['x-amz-meta-source-tag'] = request.sourceTag;
    const { status, body } = await this.client.send({ operation: 'PutObject', method: 'PUT', key: request.key, headers, body: request.body });
    // 412: the object is there already (written before, or by another uploader just now).
    if (status === 412 && request.ifAbsent) return 'exists';
    if (status === 404 || status === 412) throw s3Error('PutObject', status, body);
    return 'written';
  }
}
