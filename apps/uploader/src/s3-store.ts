import { type BucketClient, type PutObject, S3OperationError } from '@imgproxy-cache/shared';

// The bucket as the uploader sees it: look at an object, write one, and say whether S3 accepts
// our requests at all. Errors carry one-line reasons an operator can act on
// ("PutObject 403 AccessDenied: Access Denied"), which BullMQ keeps as the failed job's reason.

export { S3OperationError };

export interface StoredObject {
  size: number;
  /** lowercase hex MD5 when the ETag is one (single-part upload without SSE-KMS) */
  md5: string | undefined;
}

/**
 * An upload, every field given: the metadata holds imgproxy's other headers (stored-object.ts) and
 * the source tag (image-source.ts) for CDNs and `npm run reindex`.
 */
export type PutRequest = Required<PutObject>;

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

  /** `timeoutMs` bounds the probe (a health check must answer quickly). */
  async probe(timeoutMs?: number): Promise<Probe> {
    try {
      const signal = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
      await this.client.getObject(`${this.folder}${PROBE_KEY}`, { signal, maxBytes: 0 });
      return { ok: true };
    } catch (error) {
      const e = error as S3OperationError;
      // a 3xx: the bucket answers elsewhere, and every upload would be refused
      return { ok: !e.redirect && (ACCEPTED.has(e.code) || e.code === 'TooLarge'), code: e.code, message: e.message };
    }
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const info = await this.client.headObject(key);
    if (info === undefined) return undefined;
    const etag = (info.etag ?? '').replace(/"/g, '').toLowerCase();
    return { size: info.size, md5: /^[0-9a-f]{32}$/.test(etag) ? etag : undefined };
  }

  put(request: PutRequest): Promise<'written' | 'exists'> {
    return this.client.putObject(request);
  }
}
