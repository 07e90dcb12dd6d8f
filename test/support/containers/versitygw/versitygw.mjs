#!/usr/bin/env node
// Stands in for Versity S3 Gateway's image (versity/versitygw) where no registry can be reached,
// with the parts of it that docker-compose.yml uses: its entry point (VGW_BACKEND, VGW_BACKEND_ARG),
// ROOT_ACCESS_KEY and ROOT_SECRET_KEY, VGW_PORT, VGW_HEALTH, and the S3 behaviour the stack relies
// on: SigV4 with the root keys only, CreateBucket, objects, PutObject with `If-None-Match: *` (412,
// 409 for a concurrent create), and bucket policies deciding what anonymous clients may read.
// s3rver does the S3 work behind a front that adds what s3rver lacks (policies, conditional writes,
// refusing anonymous requests).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import S3rver from 's3rver';
import AWSAccount from 's3rver/lib/models/account.js';

const env = process.env;
const args = process.argv.slice(2);
if (args.includes('--version')) {
  console.log('Version: v1.7.0 (imgproxy-cache test stand-in)');
  process.exit(0);
}
const backend = args.indexOf('posix');
const dir = backend >= 0 ? args[backend + 1] : undefined;
if (!dir) {
  console.error('usage: versitygw posix <directory> (the stand-in knows only the posix backend)');
  process.exit(1);
}
const access = env.ROOT_ACCESS_KEY ?? env.ROOT_ACCESS_KEY_ID;
const secret = env.ROOT_SECRET_KEY ?? env.ROOT_SECRET_ACCESS_KEY;
if (!access || !secret) {
  console.error('root user access and secret key must be provided (ROOT_ACCESS_KEY, ROOT_SECRET_KEY)');
  process.exit(1);
}
const port = Number((env.VGW_PORT ?? ':7070').split(':').pop());
const health = env.VGW_HEALTH;

// s3rver accepts exactly the root keys, as the gateway does
AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
AWSAccount.DUMMY_ACCOUNT.createKeyPair(access, secret);
const policies = join(dir, '.standin-policies');
mkdirSync(policies, { recursive: true });
const s3rver = new S3rver({ port: 0, address: '127.0.0.1', directory: dir, silent: true, vhostBuckets: false });
const { port: inner } = await s3rver.run();

const xml = (res, status, code, message) => {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};

/** The access key a signed request names (header or query), or undefined for an anonymous one. */
function accessKeyOf(req, url) {
  const header = /Credential=([^/]+)\//.exec(req.headers.authorization ?? '')?.[1];
  return header ?? url.searchParams.get('X-Amz-Credential')?.split('/')[0];
}

function policyOf(bucket) {
  try {
    return JSON.parse(readFileSync(join(policies, `${bucket}.json`), 'utf8'));
  } catch {
    return undefined;
  }
}

/** Whether the bucket's policy lets anyone GetObject `key` (Allow, Principal "*", a matching Resource). */
function publicRead(bucket, key) {
  const statements = [policyOf(bucket)?.Statement ?? []].flat();
  const list = (v) => [v ?? []].flat();
  const resource = `arn:aws:s3:::${bucket}/${key}`;
  const matches = (pattern) => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(resource);
  const anyone = (p) => p === '*' || list(p?.AWS).includes('*');
  return statements.some(
    (s) => s.Effect === 'Allow' && anyone(s.Principal) && list(s.Action).some((a) => a === 's3:GetObject' || a === 's3:*') && list(s.Resource).some(matches),
  );
}

/** The request as it came, to s3rver (which checks its signature); `body` replaces the stream. */
function forward(req, res, body) {
  const upstream = request({ host: '127.0.0.1', port: inner, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', (error) => (res.headersSent ? res.destroy() : xml(res, 502, 'InternalError', error.message)));
  if (body) upstream.end(body);
  else req.pipe(upstream);
}

function exists(bucket, key) {
  return new Promise((resolve, reject) => {
    const head = request({ host: '127.0.0.1', port: inner, method: 'HEAD', path: `/${bucket}/${key}` }, (answer) => {
      answer.resume();
      resolve(answer.statusCode === 200);
    });
    head.on('error', reject);
    head.end();
  });
}

const creating = new Set();

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://s3');
  if (health && req.method === 'GET' && url.pathname === health) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('OK');
    return;
  }
  const [bucket = '', ...rest] = url.pathname.slice(1).split('/');
  const key = decodeURIComponent(rest.join('/'));
  const user = accessKeyOf(req, url);
  if (user === undefined) {
    if ((req.method === 'GET' || req.method === 'HEAD') && key !== '' && publicRead(bucket, key)) return forward(req, res);
    return xml(res, 403, 'AccessDenied', 'Access Denied');
  }
  if (user !== access) return xml(res, 403, 'InvalidAccessKeyId', 'The access key ID you provided does not exist in our records.');
  if (url.searchParams.has('policy') && key === '') {
    const file = join(policies, `${bucket}.json`);
    if (req.method === 'GET') {
      const policy = policyOf(bucket);
      if (!policy) return xml(res, 404, 'NoSuchBucketPolicy', 'The bucket policy does not exist');
      const text = JSON.stringify(policy);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      return res.end(text);
    }
    if (req.method === 'DELETE') {
      rmSync(file, { force: true });
      res.writeHead(204);
      return res.end();
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        writeFileSync(file, JSON.stringify(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
      } catch {
        return xml(res, 400, 'MalformedPolicy', 'Policies must be valid JSON');
      }
      res.writeHead(204);
      res.end();
    });
    return;
  }
  if (req.method === 'PUT' && key !== '' && req.headers['if-none-match'] === '*') {
    const id = `${bucket}/${key}`;
    if (creating.has(id)) return xml(res, 409, 'ConditionalRequestConflict', 'A conflicting conditional operation is in progress');
    creating.add(id);
    res.once('close', () => creating.delete(id));
    exists(bucket, key).then(
      (found) => {
        if (!found) return forward(req, res);
        req.resume();
        xml(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      },
      (error) => xml(res, 500, 'InternalError', error.message),
    );
    return;
  }
  forward(req, res);
});
server.keepAliveTimeout = 30_000;
server.listen(port, () => console.log(`versitygw stand-in: S3 on :${port}, data in ${dir}`));

const stop = () => server.close(() => s3rver.close().then(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
