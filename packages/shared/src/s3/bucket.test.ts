import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/index.js';
import { BucketClient } from './bucket.js';
import { S3OperationError } from './errors.js';
import { listKeys } from './list.js';

// The requests the SDK client sends as S3 receives them, and what it makes of answers no S3 server
// here can be made to give (redirects, 503s, a provider without ListObjectsV2), from a real HTTP
// server with scripted answers. What real S3 servers do is tested against Ceph RGW and s3rver.

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

interface Answer {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

let server: Server | undefined;
const clients: BucketClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

async function fakeS3(answers: Answer[] | ((req: Seen) => Answer) = []): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(request);
      const answer = (typeof answers === 'function' ? answers(request) : answers[seen.length - 1]) ?? { status: 200 };
      res.writeHead(answer.status, { 'content-type': 'application/xml', ...answer.headers });
      res.end(req.method === 'HEAD' ? undefined : answer.body);
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { port: (server!.address() as AddressInfo).port, seen };
}

function client(port: number, env: Record<string, string> = {}, sessionToken?: string): BucketClient {
  const config = loadConfig({ S3_BUCKET: 'images', S3_ENDPOINT: `http://127.0.0.1:${port}`, S3_REGION: 'eu-west-1', ...env }, 'uploader');
  const c = new BucketClient(config.s3, { credentials: async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', sessionToken }) });
  clients.push(c);
  return c;
}

const image = Buffer.from('image bytes');
const md5 = 'c0a8f3b6f2d2e1b1c6b0a0d4b7b3e0d1';
const put = (c: BucketClient, key = 'processed/abc') =>
  c.putObject({ key, body: image, contentType: 'image/png', cacheControl: 'max-age=60', md5, metadata: { 'source-tag': 'tag' }, ifAbsent: true });

const redirect301 = {
  status: 301,
  headers: { 'x-amz-bucket-region': 'us-west-2' },
  body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>images.s3.us-west-2.amazonaws.com</Endpoint><Bucket>images</Bucket></Error>',
};
const redirect307 = { status: 307, headers: { location: 'http://gateway.example/images/processed/abc' } };

describe('BucketClient (the SDK, as configured)', () => {
  it('sends a signed path-style PutObject with Content-MD5, If-None-Match, its headers and metadata, and no CRC32 by default', async () => {
    const { port, seen } = await fakeS3();
    await expect(put(client(port))).resolves.toBe('written');
    const [req] = seen;
    expect(req).toMatchObject({ method: 'PUT', body: image });
    expect(req!.url.split('?')[0]).toBe('/images/processed/abc');
    expect(req!.headers).toMatchObject({
      'content-md5': Buffer.from(md5, 'hex').toString('base64'),
      'if-none-match': '*',
      'content-type': 'image/png',
      'cache-control': 'max-age=60',
      'x-amz-meta-source-tag': 'tag',
    });
    expect(req!.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/s3\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/,
    );
    expect(Object.keys(req!.headers).filter((h) => h.startsWith('x-amz-checksum') || h === 'x-amz-sdk-checksum-algorithm')).toEqual([]);
    expect(req!.headers['x-amz-storage-class']).toBeUndefined();
  });

  it('adds a CRC32 checksum of the body with S3_CHECKSUM_MODE=WHEN_SUPPORTED', async () => {
    const { port, seen } = await fakeS3();
    await put(client(port, { S3_CHECKSUM_MODE: 'WHEN_SUPPORTED' }));
    const expected = Buffer.alloc(4);
    expected.writeUInt32BE(crc32(image));
    expect(seen[0]!.headers['x-amz-checksum-crc32']).toBe(expected.toString('base64'));
  });

  it('sends S3_STORAGE_CLASS with every upload, and names the variable when the provider refuses it', async () => {
    const refused = { status: 400, body: '<Error><Code>InvalidStorageClass</Code><Message>The storage class you specified is not valid</Message></Error>' };
    const { port, seen } = await fakeS3([{ status: 200 }, refused]);
    const c = client(port, { S3_STORAGE_CLASS: 'STANDARD_IA' });
    await put(c);
    expect(seen[0]!.headers['x-amz-storage-class']).toBe('STANDARD_IA');
    await expect(put(c)).rejects.toMatchObject({
      message: 'PutObject 400 InvalidStorageClass: The storage class you specified is not valid (S3_STORAGE_CLASS=STANDARD_IA: the provider refuses it)',
      code: 'InvalidStorageClass',
    });
  });

  it('sends the session token of temporary credentials (IAM roles, web identity)', async () => {
    const { port, seen } = await fakeS3();
    await put(client(port, {}, 'session-token'));
    expect(seen[0]!.headers['x-amz-security-token']).toBe('session-token');
  });

  it.each([
    ['processed/a b+c', '/images/processed/a%20b%2Bc'],
    ["weird/it's (1)*!", '/images/weird/it%27s%20%281%29%2A%21'],
    ['ü/ñ', '/images/%C3%BC/%C3%B1'],
  ])('encodes the key %j as %s', async (key, path) => {
    const { port, seen } = await fakeS3();
    await put(client(port), key);
    expect(seen[0]!.url.split('?')[0]).toBe(path);
  });

  it('answers "exists" to a 412 under If-None-Match, and undefined to a missing object', async () => {
    const { port } = await fakeS3([
      { status: 412, body: '<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>' },
      { status: 404 },
      { status: 404, body: '<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>' },
    ]);
    const c = client(port);
    await expect(put(c)).resolves.toBe('exists');
    await expect(c.headObject('k')).resolves.toBeUndefined();
    await expect(c.getObject('k')).resolves.toBeUndefined();
  });

  it.each([
    [
      '301 with S3’s error body (a bucket in another region)',
      redirect301,
      /^PutObject 301 PermanentRedirect: S3 redirects this bucket \(at images\.s3\.us-west-2\.amazonaws\.com, in region us-west-2\): the image was not stored; set S3_ENDPOINT \(now http:\/\/127\.0\.0\.1:\d+\) and S3_REGION \(now eu-west-1\) to the bucket's own$/,
    ],
    [
      '307 without a body (a gateway)',
      redirect307,
      /^PutObject 307 TemporaryRedirect: S3 redirects this bucket \(at http:\/\/gateway\.example\/images\/processed\/abc\): the image was not stored; set S3_ENDPOINT .* and S3_REGION .* to the bucket's own$/,
    ],
  ])('never takes a redirect for a store: %s is an error naming S3_ENDPOINT and S3_REGION', async (_, answer, message) => {
    const { port, seen } = await fakeS3(() => answer);
    const error = await put(client(port)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(S3OperationError);
    expect((error as S3OperationError).message).toMatch(message);
    expect(error).toMatchObject({ status: answer.status, redirect: true });
    expect(seen).toHaveLength(1); // not retried: a redirect does not go away by itself
  });

  it('tries a transient failure once more, then reports it with S3’s code and message', async () => {
    const slowDown = { status: 503, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' };
    const once = await fakeS3([slowDown, { status: 200 }]);
    await expect(put(client(once.port))).resolves.toBe('written');
    expect(once.seen).toHaveLength(2);
    server!.closeAllConnections();
    await new Promise((resolve) => server!.close(resolve));

    const twice = await fakeS3([slowDown, slowDown]);
    const error = await put(client(twice.port)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(S3OperationError);
    expect(error).toMatchObject({ message: 'PutObject 503 SlowDown: Please reduce your request rate.', status: 503, code: 'SlowDown', throttled: true });
    expect(twice.seen).toHaveLength(2);
  });

  it('reports a refusal at once, with S3’s code and message (HEAD has no body: the status names it)', async () => {
    const { port, seen } = await fakeS3([
      { status: 403, body: '<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist.</Message></Error>' },
      { status: 403 },
    ]);
    const c = client(port);
    await expect(put(c)).rejects.toMatchObject({
      message: 'PutObject 403 InvalidAccessKeyId: The AWS Access Key Id you provided does not exist.',
      code: 'InvalidAccessKeyId',
    });
    await expect(c.headObject('k')).rejects.toMatchObject({ message: 'HeadObject 403 Forbidden: no message' });
    expect(seen).toHaveLength(2);
  });

  it('ends a read at its signal, naming the deadline', async () => {
    const { port } = await fakeS3();
    server!.removeAllListeners('request');
    server!.on('request', () => undefined); // never answers
    const error = await client(port)
      .getObject('k', { signal: AbortSignal.timeout(200), deadline: 'S3_READ_TIMEOUT_MS' })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ message: 'GetObject timed out (S3_READ_TIMEOUT_MS)', code: 'Timeout' });
  });

  it('refuses a body past its bound without reading it', async () => {
    const { port } = await fakeS3([{ status: 200, body: 'x'.repeat(100) }]);
    await expect(client(port).getObject('k', { maxBytes: 10 })).rejects.toMatchObject({ code: 'TooLarge' });
  });

  it('lists with ListObjectsV2, and with ListObjects v1 and markers from a provider that refuses it', async () => {
    const page = (keys: string[], truncated: boolean, extra = '') =>
      `<ListBucketResult><IsTruncated>${truncated}</IsTruncated>${keys.map((k) => `<Contents><Key>${k}</Key></Contents>`).join('')}${extra}</ListBucketResult>`;
    const v2 = await fakeS3((req) =>
      req.url.includes('continuation-token=t1')
        ? { status: 200, body: page(['p/c'], false) }
        : { status: 200, body: page(['p/a', 'p/b'], true, '<NextContinuationToken>t1</NextContinuationToken>') },
    );
    await expect(listKeys(client(v2.port), 'p/')).resolves.toEqual(['p/a', 'p/b', 'p/c']);
    expect(v2.seen.map((r) => r.url)).toEqual([
      expect.stringMatching(/list-type=2.*max-keys=1000.*prefix=p%2F/),
      expect.stringMatching(/continuation-token=t1/),
    ]);
    server!.closeAllConnections();
    await new Promise((resolve) => server!.close(resolve));

    const v1 = await fakeS3((req) => {
      if (req.url.includes('list-type=2'))
        return { status: 501, body: '<Error><Code>NotImplemented</Code><Message>ListObjectsV2 is not implemented</Message></Error>' };
      return req.url.includes('marker=p%2Fb') ? { status: 200, body: page(['p/c'], false) } : { status: 200, body: page(['p/a', 'p/b'], true) };
    });
    const c = client(v1.port);
    await expect(listKeys(c, 'p/')).resolves.toEqual(['p/a', 'p/b', 'p/c']);
    await expect(listKeys(c, 'p/')).resolves.toEqual(['p/a', 'p/b', 'p/c']);
    // asked once whether V2 works; v1 from then on
    expect(v1.seen.filter((r) => r.url.includes('list-type=2'))).toHaveLength(1);
  });
});
