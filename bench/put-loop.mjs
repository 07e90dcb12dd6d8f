#!/usr/bin/env node
// What one upload must cost: PUTs of ~30 KB images with Content-MD5 and If-None-Match: *, at a
// fixed rate, new keys, `concurrency` at most in flight. Prints its own CPU per PUT (all threads)
// as one JSON line. Modes:
//   ours      the uploader's own: S3ObjectStore.put through the process's S3Client (the floor of an upload)
//   sdk       @aws-sdk/client-s3 PutObject with a plain client (checksums WHEN_REQUIRED, its middleware
//             cache, the SDK's own request handler)
//   sdk-nocache  the same without the middleware cache
//   sigv4     signed with the SDK's @smithy/signature-v4, sent with an undici Pool
//   unsigned  the same PUT without a signature (the floor)
// Usage: node bench/put-loop.mjs <mode> <endpoint> <bucket> <rate> <seconds> [warm-up PUTs]
import { createHash } from 'node:crypto';
import { Pool } from 'undici';

const [, , mode, endpoint, bucket, rateArg, secondsArg, warmArg = '50'] = process.argv;
const rate = Number(rateArg);
const total = Math.round(rate * Number(secondsArg));
const bodies = Array.from({ length: 16 }, (_, i) => Buffer.alloc(30 * 1024, i + 1));
const md5s = bodies.map((b) => createHash('md5').update(b).digest('base64'));
const credentials = { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'bench', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'bench' };
const run = Math.random().toString(36).slice(2, 8);

let put;
if (mode === 'ours') {
  const { BucketClient, loadConfig } = await import('../packages/shared/dist/index.js');
  const { S3ObjectStore } = await import('../apps/uploader/dist/s3-store.js');
  const config = loadConfig({ S3_BUCKET: bucket, S3_ENDPOINT: endpoint, S3_REGION: 'us-east-1' }, 'uploader');
  const store = new S3ObjectStore(new BucketClient(config.s3, { sockets: 16, credentials: async () => credentials }), '');
  const hex = md5s.map((m) => Buffer.from(m, 'base64').toString('hex'));
  put = (key, i) =>
    store.put({ key, body: bodies[i % 16], contentType: 'image/webp', cacheControl: null, contentDisposition: null, md5: hex[i % 16], ifAbsent: true });
} else if (mode === 'sdk' || mode === 'sdk-nocache') {
  const { PutObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 2,
    cacheMiddleware: mode === 'sdk',
  });
  put = (key, i) =>
    client.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: bodies[i % 16], ContentType: 'image/webp', ContentMD5: md5s[i % 16], IfNoneMatch: '*' }),
    );
} else {
  const { SignatureV4 } = await import('@smithy/signature-v4');
  const { Sha256 } = await import('@smithy/core/checksum');
  const signer = new SignatureV4({ credentials, region: 'us-east-1', service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false });
  const url = new URL(endpoint);
  const pool = new Pool(url.origin, { connections: 16 });
  put = async (key, i) => {
    const body = bodies[i % 16];
    let headers = {
      host: url.host,
      'content-type': 'image/webp',
      'content-length': String(body.length),
      'content-md5': md5s[i % 16],
      'if-none-match': '*',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    };
    const path = `/${bucket}/${key}`;
    if (mode === 'sigv4') {
      ({ headers } = await signer.sign({ method: 'PUT', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path, headers, query: {} }));
    }
    const res = await pool.request({ method: 'PUT', path, headers, body });
    await res.body.dump();
    if (res.statusCode >= 300) throw new Error(`PUT ${res.statusCode}`);
  };
}

// warm up outside the measurement, 16 at a time
for (let i = 0; i < Number(warmArg); i += 16) {
  await Promise.all(Array.from({ length: Math.min(16, Number(warmArg) - i) }, (_, j) => put(`warm/${run}/${i + j}`, i + j)));
}

const cpu0 = process.cpuUsage();
const started = performance.now();
const inflight = new Set();
let errors = 0;
for (let i = 0; i < total; i++) {
  const wait = started + (i * 1000) / rate - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const p = put(`loop/${run}/${i}`, i).catch(() => errors++);
  inflight.add(p);
  p.finally(() => inflight.delete(p));
  if (inflight.size >= 16) await Promise.race(inflight);
}
await Promise.all(inflight);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ mode, puts: total, errors, seconds, cpuMsPerPut: (cpu.user + cpu.system) / 1000 / total })}\n`);
process.exit(0);
