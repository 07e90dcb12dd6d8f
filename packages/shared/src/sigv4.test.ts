import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceData } from '@smithy/types';
import { describe, expect, it } from 'vitest';
import { SigV4Signer } from './sigv4.js';

// Our SigV4 against the AWS SDK's own signer: the same request at the same instant gets the same
// headers, Authorization included (s3rver and the S3 stand-in check signatures end to end).

class Sha256 {
  private readonly hash;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', Buffer.from(secret as Uint8Array));
  }
  update(data: Uint8Array) {
    this.hash.update(data);
  }
  async digest() {
    return this.hash.digest();
  }
  reset() {}
}

const date = new Date('2026-12-01T23:59:58.123Z');

async function both(request: { method: string; path: string; query?: Record<string, string>; headers: Record<string, string> }, sessionToken?: string) {
  const credentials = async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken });
  const sdk = new SignatureV4({ credentials, region: 'eu-west-1', service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false });
  const theirs = await sdk.sign(
    { method: request.method, protocol: 'https:', hostname: 'images.s3.test', path: request.path, headers: request.headers, query: request.query ?? {} },
    { signingDate: date },
  );
  const ours = await new SigV4Signer(credentials, 'eu-west-1').sign(request, date);
  return { theirs: theirs.headers, ours };
}

describe('SigV4Signer', () => {
  it('signs a GET as the SDK does (UNSIGNED-PAYLOAD, a percent-encoded key)', async () => {
    const { theirs, ours } = await both({
      method: 'GET',
      path: '/images/processed/a%20b%2Bc%21',
      headers: { host: 'images.s3.test', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    expect(ours).toEqual(theirs);
    expect(ours.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20261201\/eu-west-1\/s3\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$/,
    );
  });

  it('signs a PUT with its headers (Cache-Control unsigned, as the SDK leaves it), a session token, and a query', async () => {
    const { theirs, ours } = await both(
      {
        method: 'PUT',
        path: '/images/',
        query: { policy: '', 'list-type': '2', prefix: 'a/b c' },
        headers: {
          host: 'images.s3.test',
          'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
          'content-length': '11',
          'content-md5': 'bWQ1',
          'content-type': 'image/png',
          'cache-control': 'max-age=31536000,   public',
          'content-disposition': 'inline;  filename="a b.png"',
          'if-none-match': '*',
        },
      },
      'session-token/with+chars=',
    );
    expect(ours).toEqual(theirs);
    expect(ours['x-amz-security-token']).toBe('session-token/with+chars=');
  });

  it('signs again with a new key on a new day, and with the secret of now', async () => {
    let secret = 'first';
    const signer = new SigV4Signer(async () => ({ accessKeyId: 'AK', secretAccessKey: secret }), 'auto');
    const request = { method: 'HEAD', path: '/b/k', headers: { host: 'h', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } };
    const one = await signer.sign(request, date);
    expect((await signer.sign(request, date)).authorization).toBe(one.authorization);
    const nextDay = await signer.sign(request, new Date(date.getTime() + 2_000));
    expect(nextDay['x-amz-date']).toBe('20261202T000000Z');
    expect(nextDay.authorization).toContain('/20261202/auto/s3/');
    secret = 'rotated';
    expect((await signer.sign(request, date)).authorization).not.toBe(one.authorization);
  });
});
