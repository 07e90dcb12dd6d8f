import { createHash, createHmac } from 'node:crypto';
import type { AwsCredentialIdentityProvider } from '@smithy/types';

// AWS Signature Version 4 in the Authorization header, for the requests this project sends (path
// as given, payload UNSIGNED-PAYLOAD or hashed by the caller). The same canonical request as the
// SDK's SignatureV4 (s3-client.test.ts compares them), without its generic request cloning and
// async hashing: a bucket read is signed on the hot path of every memory miss.

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
  /** the signing key of one day, region and secret: HMAC chain worked out once a day */
  private key: { secret: string; day: string; value: Buffer } | undefined;

  constructor(
    private readonly credentials: AwsCredentialIdentityProvider,
    private readonly region: string,
    private readonly service = 's3',
  ) {}

  /** The headers to send: those given, x-amz-date, the session token if any, and Authorization. */
  async sign(request: SignInput, date = new Date()): Promise<Record<string, string>> {
    const { accessKeyId, secretAccessKey, sessionToken } = await this.credentials();
    const amzDate = date.toISOString().replace(/[-:]|\.\d{3}/g, ''); // 20261201T000000Z
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = { ...request.headers, 'x-amz-date': amzDate };
    if (sessionToken) headers['x-amz-security-token'] = sessionToken;

    const names = Object.keys(headers)
      .filter((name) => !UNSIGNABLE.has(name) && !name.startsWith('proxy-') && !name.startsWith('sec-'))
      .sort();
    let canonicalHeaders = '';
    for (const name of names)
      canonicalHeaders += `${name}:${headers[name]!.replace(/[\r\n]/g, ' ')
        .replace(/[ \t]+/g, ' ')
        .trim()}\n`;
    const signedHeaders = names.join(';');
    const query = request.query ?? {};
    const canonicalQuery = Object.keys(query)
      .map((name) => [escapeUri(name), escapeUri(query[name]!)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => `${name}=${value}`)
      .join('&');
    const canonical = `${request.method}\n${request.path}\n${canonicalQuery}\n${canonicalHeaders}\n${signedHeaders}\n${headers['x-amz-content-sha256'] ?? EMPTY_SHA256}`;
    const scope = `${day}/${this.region}/${this.service}/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
    const signature = createHmac('sha256', this.signingKey(secretAccessKey, day)).update(toSign).digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  }

  private signingKey(secret: string, day: string): Buffer {
    if (this.key?.secret === secret && this.key.day === day) return this.key.value;
    const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
    const value = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), this.region), this.service), 'aws4_request');
    this.key = { secret, day, value };
    return value;
  }
}
