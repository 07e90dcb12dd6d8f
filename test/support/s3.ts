import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, S3ServiceException } from '@aws-sdk/client-s3';

// s3rver in a child process, and a plain client to look into the bucket.

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startS3rver(port = 0, directory?: string): Promise<TestS3> {
  const dir = directory ?? mkdtempSync(join(tmpdir(), 'imgproxy-cache-s3rver-'));
  const script = fileURLToPath(new URL('./s3rver-child.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, String(port), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const bound = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    port: bound,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
      if (!directory) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function testS3Client(endpoint: string, credentials = S3RVER_CREDENTIALS): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function createBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

export interface StoredObject {
  body: Buffer;
  contentType: string | undefined;
  cacheControl: string | undefined;
  contentDisposition: string | undefined;
}

export async function getObject(client: S3Client, bucket: string, key: string): Promise<StoredObject | undefined> {
  try {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return {
      body: Buffer.from(await out.Body!.transformToByteArray()),
      contentType: out.ContentType,
      cacheControl: out.CacheControl,
      contentDisposition: out.ContentDisposition,
    };
  } catch (error) {
    if (error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.$metadata.httpStatusCode === 404)) return undefined;
    throw error;
  }
}

/**
 * Waits until the object holds exactly `expected`, with its metadata. s3rver acknowledges a PUT
 * before its file is flushed and serves a file still being written (its putObject resolves on the
 * hashing transform's 'finish'), and writes an object's metadata after its bytes (serving
 * binary/octet-stream meanwhile), so a reader can briefly see a partial object; waiting for the
 * exact bytes and a Content-Type (every stored image has one) checks the contract without that
 * race. A wrong object that stays wrong makes this time out.
 */
export async function waitForObjectBytes(client: S3Client, bucket: string, key: string, expected: Buffer, timeoutMs = 15_000): Promise<StoredObject> {
  let last: StoredObject | undefined;
  const { waitFor } = await import('./wait.js');
  try {
    return await waitFor(
      async () => {
        last = await getObject(client, bucket, key);
        return last?.body.equals(expected) && last.contentType !== 'binary/octet-stream' ? last : undefined;
      },
      { what: `object ${key}`, timeoutMs },
    );
  } catch (error) {
    const seen = last ? `it holds ${last.body.length} other bytes (expected ${expected.length})` : 'it never appeared';
    throw new Error(`${(error as Error).message}: ${seen}`);
  }
}

export async function objectExists(client: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (error) {
    if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404) return false;
    throw error;
  }
}

export async function listKeys(client: S3Client, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const item of out.Contents ?? []) keys.push(item.Key!);
    token = out.NextContinuationToken;
  } while (token);
  return keys.sort();
}
