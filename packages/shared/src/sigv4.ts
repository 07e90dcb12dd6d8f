import { createHmac, hash } from 'node:crypto';
import type { AwsCredentialIdentityProvider } from '@smithy/types';

// AWS Signature Version 4 in the Authorization header, for the requests this project sends (path
// as given, payload UNSIGNED-PAYLOAD or hashed by the caller). The same canonical request as the
// SDK's SignatureV4 (s3-client.test.ts compares them), without its generic request cloning and
// async hashing: a bucket read is signed on the hot path of every memory miss. The hashes are
// one-shot (`crypto.hash`, HMAC from its definition over a key padded once a day): a Hash or Hmac
// object per request costs several times the hashing itself in a busy process.

const BLOCK = 64; // SHA-256's block size, in bytes

/** A header value that needs tidying for the canonical request (line breaks, runs of blanks, blanks at its ends). */
const TIDY = /[\r\n\t]| {2}|^ | $/;

/** Headers the SDK never signs (proxies and clients may change them on the way). */
const UNSIGNABLE = new Set([
  'authorization',
  'cache-control',
  'connection',
  'expect',
  'from',
  'keep-alive',
  'max-forwards',
  'pragma',
  'referer',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'x-amzn-trace-id',
]);

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export interface SignInput {
  method: string;
  /** the path as sent: already percent-encoded */
  path: string;
  query?: Record<string, string>;
  /** lowercase names; `host` among them */
  headers: Record<string, string>;
}

/** RFC 3986 unreserved characters stay, everything else is percent-encoded (as S3 canonicalises). */
function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export class SigV4Signer {
  /** the signing key of one day, region and secret (the HMAC chain, worked out once a day), padded for HMAC */
  private key: { secret: string; day: string; inner: Buffer; outer: Buffer } | undefined;
  /** x-amz-date of the current second */
  private stamp = { second: -1, value: '' };

  constructor(
    private readonly credentials: AwsCredentialIdentityProvider,
    private readonly region: string,
    private readonly service = 's3',
  ) {}

  /** The headers to send: those given, x-amz-date, the session token if any, and Authorization. */
  async sign(request: SignInput, date = new Date()): Promise<Record<string, string>> {
    const { accessKeyId, secretAccessKey, sessionToken } = await this.credentials();
    const amzDate = this.amzDate(date);
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = { ...request.headers, 'x-amz-date': amzDate };
    if (sessionToken) headers['x-amz-security-token'] = sessionToken;

    const names = Object.keys(headers)
      .filter((name) => !UNSIGNABLE.has(name) && !name.startsWith('proxy-') && !name.startsWith('sec-'))
      .sort();
    let canonicalHeaders = '';
    for (const name of names) {
      const value = headers[name]!;
      canonicalHeaders += `${name}:${
        TIDY.test(value)
          ? value
              .replace(/[\r\n]/g, ' ')
              .replace(/[ \t]+/g, ' ')
              .trim()
          : value
      }\n`;
    }
    const signedHeaders = names.join(';');
    const query = request.query ?? {};
    const canonicalQuery = Object.keys(query)
      .map((name) => [escapeUri(name), escapeUri(query[name]!)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => `${name}=${value}`)
      .join('&');
    const canonical = `${request.method}\n${request.path}\n${canonicalQuery}\n${canonicalHeaders}\n${signedHeaders}\n${headers['x-amz-content-sha256'] ?? EMPTY_SHA256}`;
    const scope = `${day}/${this.region}/${this.service}/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${hash('sha256', canonical, 'hex')}`;
    const signature = this.hmac(secretAccessKey, day, toSign);
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  }

  /** 20261201T000000Z */
  private amzDate(date: Date): string {
    const second = Math.floor(date.getTime() / 1000);
    if (second !== this.stamp.second) this.stamp = { second, value: date.toISOString().replace(/[-:]|\.\d{3}/g, '') };
    return this.stamp.value;
  }

  /** HMAC-SHA256 (RFC 2104) of ASCII `data` under the day's signing key, hex. */
  private hmac(secret: string, day: string, data: string): string {
    const key = this.signingKey(secret, day);
    const inner = Buffer.allocUnsafe(BLOCK + data.length);
    key.inner.copy(inner);
    inner.write(data, BLOCK, 'latin1');
    const outer = Buffer.allocUnsafe(BLOCK + 32);
    key.outer.copy(outer);
    hash('sha256', inner, 'buffer').copy(outer, BLOCK);
    return hash('sha256', outer, 'hex');
  }

  private signingKey(secret: string, day: string): { inner: Buffer; outer: Buffer } {
    if (this.key?.secret === secret && this.key.day === day) return this.key;
    const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
    const value = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), this.region), this.service), 'aws4_request');
    const inner = Buffer.alloc(BLOCK, 0x36);
    const outer = Buffer.alloc(BLOCK, 0x5c);
    for (let i = 0; i < value.length; i++) {
      inner[i]! ^= value[i]!;
      outer[i]! ^= value[i]!;
    }
    this.key = { secret, day, inner, outer };
    return this.key;
  }
}
