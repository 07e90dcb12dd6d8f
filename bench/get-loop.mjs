#!/usr/bin/env node
// What one bucket read must cost: GETs of stored ~30 KB images, 32 in flight, for a while. Prints
// its own CPU per GET (all threads) and its rate as one JSON line. Modes:
//   ours      the proxy's BucketReader.lookup (the process's S3Client, the read's deadline, headers kept)
//   sdk-sign  the same GET signed with the SDK's @smithy/signature-v4, sent with an undici Pool
//   unsigned  the same GET without a signature (the floor)
// Usage: node bench/get-loop.mjs <mode> <endpoint> <bucket> <keys file> <seconds>
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

const [, , mode, endpoint, bucket, keysFile, secondsArg] = process.argv;
const keys = readFileSync(keysFile, 'utf8').trim().split('\n');
const credentials = { accessKeyId: 'bench', secretAccessKey: 'bench' };
const url = new URL(endpoint);

let get;
if (mode === 'ours') {
  const { BucketClient, loadConfig } = await import('../packages/shared/dist/index.js');
  const { BucketReader } = await import('../apps/proxy/dist/stored/bucket-reader.js');
  const config = loadConfig({ S3_BUCKET: bucket, S3_ENDPOINT: endpoint, S3_REGION: 'us-east-1', IMGPROXY_URL: 'http://127.0.0.1:1' }, 'proxy');
  const reader = new BucketReader(new BucketClient(config.s3, { sockets: 16, credentials: async () => credentials }), '', 1000, 20 * 2 ** 20);
  get = async (key) => {
    const found = await reader.lookup(key, 'GET');
    if (typeof found !== 'object') throw new Error(found);
  };
} else {
  const { SignatureV4 } = await import('@smithy/signature-v4');
  const { Sha256 } = await import('@smithy/core/checksum');
  const signer = new SignatureV4({ credentials, region: 'us-east-1', service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false });
  const pool = new Pool(url.origin, { connections: 16 });
  get = async (key) => {
    let headers = { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    const path = `/${bucket}/${key}`;
    if (mode === 'sdk-sign') {
      ({ headers } = await signer.sign({ method: 'GET', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path, headers, query: {} }));
    }
    const res = await pool.request({ method: 'GET', path, headers });
    Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`GET ${res.statusCode}`);
  };
}

const pick = () => keys[Math.floor(Math.random() * keys.length)];
const loop = async (until) => {
  let n = 0;
  while (performance.now() < until) {
    await get(pick());
    n += 1;
  }
  return n;
};
await Promise.all(Array.from({ length: 32 }, () => loop(performance.now() + 3000))); // warm-up
const cpu0 = process.cpuUsage();
const started = performance.now();
const counts = await Promise.all(Array.from({ length: 32 }, () => loop(started + Number(secondsArg) * 1000)));
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
const gets = counts.reduce((a, b) => a + b, 0);
process.stdout.write(`${JSON.stringify({ mode, gets, rate: gets / seconds, cpuUsPerGet: (cpu.user + cpu.system) / gets })}\n`);
process.exit(0);
