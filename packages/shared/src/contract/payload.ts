import { crc32 } from 'node:zlib';
import type { StoredHeader } from './http-cache.js';

// What the proxy stores in Redis for one image: its metadata and its bytes in one value. The
// metadata travels with the bytes, not in the job, so that bytes stored again for an existing job
// (its first ones expired, or its job failed) are uploaded with their own checksum and headers.
//
//   "icp1" | header length (uint32 BE) | header (JSON) | body

const MAGIC = Buffer.from('icp1');
const PREFIX = MAGIC.length + 4;

export interface PayloadMeta {
  contentType: string | null;
  cacheControl: string | null;
  contentDisposition: string | null;
  /** byte length of the body */
  size: number;
  /** CRC-32 of the body (8 lowercase hex digits), checked before upload */
  crc32: string;
  /** epoch milliseconds when the proxy finished receiving the body */
  receivedAt: number;
  /** X-Request-ID of the request that teed these bytes */
  requestId?: string;
  /**
   * imgproxy's other headers the image is stored and served with (http-cache.ts): its validators,
   * CSP and Vary; absent in payloads of earlier proxies (the three above are all they kept).
   */
  headers?: Partial<Record<StoredHeader, string>>;
}

/** Lowercase hex CRC-32 of an image's bytes. */
export function crc32Of(bytes: Buffer | readonly Buffer[]): string {
  let value = 0;
  for (const chunk of Buffer.isBuffer(bytes) ? [bytes] : bytes) value = crc32(chunk, value);
  return value.toString(16).padStart(8, '0');
}

/** One buffer holding the metadata and the body (given as the chunks it arrived in). */
export function encodePayload(meta: PayloadMeta, body: readonly Buffer[]): Buffer {
  const header = Buffer.from(JSON.stringify(meta));
  const prefix = Buffer.allocUnsafe(PREFIX);
  MAGIC.copy(prefix);
  prefix.writeUInt32BE(header.length, MAGIC.length);
  return Buffer.concat([prefix, header, ...body], PREFIX + header.length + meta.size);
}

export type Decoded = { meta: PayloadMeta; body: Buffer } | { problem: string };

/** The metadata and body of a stored payload, checked against each other. */
export function decodePayload(stored: Buffer): Decoded {
  if (stored.length < PREFIX || !stored.subarray(0, MAGIC.length).equals(MAGIC)) return { problem: 'not a payload written by imgproxy-cache' };
  const headerLength = stored.readUInt32BE(MAGIC.length);
  let meta: PayloadMeta;
  try {
    meta = JSON.parse(stored.toString('utf8', PREFIX, PREFIX + headerLength)) as PayloadMeta;
  } catch {
    return { problem: 'its header is not readable' };
  }
  const body = stored.subarray(PREFIX + headerLength);
  const crc = crc32Of(body);
  if (body.length !== meta.size || crc !== meta.crc32) {
    return { problem: `its bytes do not match its header (size ${body.length}, crc32 ${crc}; expected size ${meta.size}, crc32 ${meta.crc32})` };
  }
  return { meta, body };
}
