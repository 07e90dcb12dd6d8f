import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';
import { BucketClient, encodeKey, S3OperationError } from './s3-client.js';

// The request as S3 receives it, from a real HTTP server standing in for S3 (signatures are checked
// by s3rver in the integration tests). Answers are scripted per request.

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

let server: Server | undefined;
const clients: BucketClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

async function fakeS3(answers: { status: number; body?: string }[] = []): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      const answer = answers[seen.length - 1] ?? { status: 200 };
      res.writeHead(answer.status, { 'content-type': 'application/xml' });
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { port: (server!.address() as AddressInfo).port, seen };
}

function client(port: number, env: Record<string, string> = {}, sessionToken?: string): BucketClient {
  const config = loadConfig({ S3_BUCKET: 'images', S3_ENDPOINT: `http://s3.test:${port}`, S3_REGION: 'eu-west-1', ...env }, 'uploader');
  const c = new BucketClient(config.s3, {
    credentials: async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', sessionToken }),
    // every request reaches the local server, whatever host it names
    dispatcher: new Pool(`http://127.0.0.1:${port}`),
  });
  clients.push(c);
  return c;
}

const put = (c: BucketClient, key = 'processed/abc') =>
  c.send({ operation: 'PutObject', method: 'PUT', key, headers: { 'content-md5': 'bWQ1', 'if-none-match': '*' }, body: Buffer.from('image bytes') });

describe('BucketClient', () => {
  it('signs a path-style request with SigV4 (UNSIGNED-PAYLOAD), headers and body as given', async () => {
    const { port, seen } = await fakeS3();
    await put(client(port));
    const [req] = seen;
    expect(req).toMatchObject({ method: 'PUT', url: '/images/processed/abc', body: Buffer.from('image bytes') });
    expect(req!.headers).toMatchObject({ host: `s3.test:${port}`, 'content-md5': 'bWQ1', 'if-none-match': '*', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
    expect(req!.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/s3\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/,
    );
    expect(req!.headers['x-amz-security-token']).toBeUndefined();
    expect(req!.headers['x-amz-checksum-crc32']).toBeUndefined();
  });

  it('addresses the bucket by host name when S3_FORCE_PATH_STYLE=false', async () => {
    const { port, seen } = await fakeS3();
    await put(client(port, { S3_FORCE_PATH_STYLE: 'false' }));
    expect(seen[0]).toMatchObject({ url: '/processed/abc', headers: { host: `images.s3.test:${port}` } });
  });

  it('sends the session token of temporary credentials (IAM roles, web identity)', async () => {
    const { port, seen } = await fakeS3();
    await put(client(port, {}, 'session-token'));
    expect(seen[0]!.headers['x-amz-security-token']).toBe('session-token');
    expect(seen[0]!.headers.authorization).toMatch(/SignedHeaders=[^,]*x-amz-security-token/);
  });

  it('adds a CRC32 checksum of the body with S3_CHECKSUM_MODE=WHEN_SUPPORTED', async () => {
    const { port, seen } = await fakeS3();
    await put(client(port, { S3_CHECKSUM_MODE: 'WHEN_SUPPORTED' }));
    const expected = Buffer.alloc(4);
    expected.writeUInt32BE(crc32(Buffer.from('image bytes')));
    expect(seen[0]!.headers['x-amz-checksum-crc32']).toBe(expected.toString('base64'));
  });

  it.each([
    ['processed/a b+c', '/images/processed/a%20b%2Bc'],
    ["weird/it's (1)*!", '/images/weird/it%27s%20%281%29%2A%21'],
    ['ü/ñ', '/images/%C3%BC/%C3%B1'],
  ])('encodes the key %j as %s', async (key, path) => {
    const { port, seen } = await fakeS3();
    await put(client(port), key);
    expect(seen[0]!.url).toBe(path);
    expect(encodeKey(key)).toBe(path.replace('/images/', ''));
  });

  it('tries a transient failure once more, then reports it with S3’s code and message', async () => {
    const slowDown = { status: 503, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' };
    const once = await fakeS3([slowDown, { status: 200 }]);
    await expect(put(client(once.port))).resolves.toMatchObject({ status: 200 });
    expect(once.seen).toHaveLength(2);
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
    await expect(c.send({ operation: 'HeadObject', method: 'HEAD', key: 'k' })).rejects.toMatchObject({ message: 'HeadObject 403 Forbidden: no message' });
    expect(seen).toHaveLength(2);
  });
});
