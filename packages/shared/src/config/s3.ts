import type { Reader } from './reader.js';
import { type ChecksumMode, S3_ROLES, type Variable } from './variable.js';

// The bucket: where the stored images are, and how uploads are made.

export const S3_VARIABLES = [
  {
    name: 'S3_BUCKET',
    default: undefined,
    roles: [...S3_ROLES, 'dashboard'],
    required: ['uploader', 'purge', 'reindex', 'setup-bucket', 'warm'],
    description:
      'Bucket for processed images. The proxy reads it too, when set: it serves stored images when imgproxy is down, and with `CACHE_READ_THROUGH` before asking imgproxy.',
  },
  { name: 'S3_FOLDER', default: '', roles: S3_ROLES, description: 'Key prefix: `processed` and `processed/` both give `processed/<md5>`.' },
  {
    name: 'S3_ENDPOINT',
    default: 'https://fly.storage.tigris.dev',
    roles: S3_ROLES,
    description: 'S3-compatible endpoint (`https://t3.storage.dev` for Tigris outside Fly, `https://s3.<region>.amazonaws.com` for AWS).',
  },
  { name: 'S3_REGION', default: 'auto', roles: S3_ROLES, description: 'Region used for request signing.' },
  {
    name: 'S3_FORCE_PATH_STYLE',
    default: 'true',
    roles: S3_ROLES,
    description: 'Path-style addressing (MinIO and s3rver need it; Tigris and AWS work either way).',
  },
  {
    name: 'S3_CHECKSUM_MODE',
    default: 'WHEN_REQUIRED',
    roles: ['uploader'],
    description:
      '`WHEN_REQUIRED` or `WHEN_SUPPORTED`: whether uploads also carry a CRC32 checksum (`x-amz-checksum-crc32`). R2, B2 and older MinIO reject it, so the default sends only Content-MD5, which every provider checks.',
  },
  {
    name: 'S3_CONDITIONAL_WRITES',
    default: 'true',
    roles: ['uploader'],
    description:
      'Create objects with `If-None-Match: *`: a new image costs one request, and an object already there is never overwritten blindly (on 412 the uploader looks at it: same bytes count as done, different ones are replaced and logged). Turn off for providers that reject the header; each upload then looks first (HEAD) and writes after.',
  },
  {
    name: 'S3_STORAGE_CLASS',
    default: '',
    roles: ['uploader'],
    description:
      'Storage class of the stored images, sent with every upload (`STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR` on AWS; `STANDARD_IA` on R2). Empty: the bucket’s own default. `GLACIER` and `DEEP_ARCHIVE` are refused: their objects cannot be read without a restore, and pages read images from the bucket. A class the provider does not know fails each upload with a reason naming this variable.',
  },
  {
    name: 'S3_REQUEST_TIMEOUT_MS',
    default: '30000',
    roles: S3_ROLES,
    description:
      'Abort one S3 request (HEAD or PUT) after this long; the SDK tries it once more, then the upload is retried with backoff. `setup-bucket` waits this long for S3 to answer at all.',
  },
] as const satisfies readonly Variable[];

export interface S3Config {
  bucket: string;
  folder: string;
  endpoint: string;
  region: string;
  forcePathStyle: boolean;
  checksumMode: ChecksumMode;
  conditionalWrites: boolean;
  requestTimeoutMs: number;
  /** S3_STORAGE_CLASS: sent on every upload; '' leaves it to the bucket */
  storageClass: string;
}

export function readS3(r: Reader): S3Config {
  return {
    bucket: r.raw('S3_BUCKET'),
    folder: normalizeFolder(r.raw('S3_FOLDER')),
    endpoint: r.url('S3_ENDPOINT', ['http:', 'https:']).toString().replace(/\/$/, ''),
    region: r.raw('S3_REGION'),
    forcePathStyle: r.bool('S3_FORCE_PATH_STYLE'),
    checksumMode: r.oneOf('S3_CHECKSUM_MODE', ['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const, (value) => value.toUpperCase()),
    conditionalWrites: r.bool('S3_CONDITIONAL_WRITES'),
    requestTimeoutMs: r.int('S3_REQUEST_TIMEOUT_MS', 100),
    storageClass: storageClass(r),
  };
}

function storageClass(r: Reader): string {
  const value = r.raw('S3_STORAGE_CLASS');
  if (value !== '' && !/^[A-Za-z0-9_-]+$/.test(value)) r.problem(`S3_STORAGE_CLASS must be a storage class name (STANDARD_IA, ...), got "${value}"`);
  else if (/^(GLACIER|DEEP_ARCHIVE)$/i.test(value))
    r.problem(`S3_STORAGE_CLASS=${value} is refused: its objects cannot be read without a restore, and pages read images from the bucket`);
  return value;
}

/** `processed`, `/processed/` and `processed/` all mean the prefix `processed/`; empty means none. */
export function normalizeFolder(folder: string): string {
  const trimmed = folder.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}
