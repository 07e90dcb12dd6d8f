import { BucketClient, loadConfig } from '@imgproxy-cache/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnService } from './support/service.js';
import { startVersityStandin, type TestVersity } from './support/versitygw.js';

// `setup-bucket` (the compose file's s3-init) against the compose file's S3 server, as a process:
// the bucket is made, only S3_FOLDER is readable without credentials, a second run changes
// nothing, and failures are one line with exit 1.

const SCRIPT = 'apps/uploader/dist/setup-bucket-main.js';
let s3: TestVersity;

beforeAll(async () => {
  s3 = await startVersityStandin();
});
afterAll(async () => {
  await s3?.stop();
});

const envFor = (bucket: string, extra: Record<string, string> = {}) => ({
  S3_ENDPOINT: s3.endpoint,
  S3_BUCKET: bucket,
  S3_FOLDER: 'processed',
  S3_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
  AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
  ...extra,
});

async function run(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const service = spawnService([SCRIPT], env);
  const code = await service.exited();
  return { code, output: service.output() };
}

describe('setup-bucket', () => {
  it('creates the bucket and lets anyone read S3_FOLDER/, nothing else; a second run changes nothing', async () => {
    const first = await run(envFor('fresh-bucket'));
    expect(first, first.output).toMatchObject({ code: 0 });
    expect(first.output).toMatch(/created bucket fresh-bucket/);
    expect(first.output).toMatch(/anyone may read fresh-bucket\/processed\/\*/);

    const config = loadConfig(envFor('fresh-bucket'), 'uploader');
    const client = new BucketClient(config.s3, { credentials: async () => s3.credentials });
    for (const key of ['processed/abc', 'private/abc']) {
      expect(await client.putObject({ key, body: Buffer.from(key), contentType: 'image/png' })).toBe('written');
    }
    client.close();
    const open = await fetch(`${s3.endpoint}/fresh-bucket/processed/abc`);
    expect(open.status).toBe(200);
    expect(await open.text()).toBe('processed/abc');
    expect((await fetch(`${s3.endpoint}/fresh-bucket/private/abc`)).status).toBe(403);
    expect((await fetch(`${s3.endpoint}/fresh-bucket`)).status).toBe(403); // no anonymous listing

    const second = await run(envFor('fresh-bucket'));
    expect(second, second.output).toMatchObject({ code: 0 });
    expect(second.output).toMatch(/bucket fresh-bucket exists/);
    expect((await fetch(`${s3.endpoint}/fresh-bucket/processed/abc`)).status).toBe(200);
  });

  it('stops with one line and exit 1 when S3 refuses the keys', async () => {
    const { code, output } = await run(envFor('refused', { AWS_SECRET_ACCESS_KEY: 'wrong', AWS_ACCESS_KEY_ID: 'wrong' }));
    expect(code).toBe(1);
    expect(output.trim().split('\n')).toHaveLength(1);
    expect(output).toMatch(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  });

  it('waits S3_REQUEST_TIMEOUT_MS for an S3 that does not answer, then stops with one line naming S3_ENDPOINT', async () => {
    const { code, output } = await run(envFor('unreachable', { S3_ENDPOINT: 'http://127.0.0.1:9', S3_REQUEST_TIMEOUT_MS: '1000' }));
    expect(code).toBe(1);
    expect(output).toMatch(/waiting for S3/);
    expect(output).toMatch(/did not answer within 1000 ms \(S3_REQUEST_TIMEOUT_MS\).*S3_ENDPOINT http:\/\/127\.0\.0\.1:9/);
    expect(output).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('names the variable when S3_BUCKET is missing (exit 2)', async () => {
    const { code, output } = await run({ ...envFor('x'), S3_BUCKET: '' });
    expect(code).toBe(2);
    expect(output).toMatch(/S3_BUCKET is required/);
  });
});
