#!/usr/bin/env node
// Stands in for imgproxy's image (4.0.12, the one the compose file pins) where no registry can be
// reached, with the parts of it that the compose file and the all-in-one image use: `imgproxy`
// serves on IMGPROXY_BIND (":8080"), `imgproxy health` checks it, signatures are checked when
// IMGPROXY_KEY and IMGPROXY_SALT are set (403 otherwise), and images come with imgproxy 4's headers:
// IMGPROXY_TTL, the source's ETag and Last-Modified (on unless IMGPROXY_ETAG_ENABLED or
// IMGPROXY_LAST_MODIFIED_ENABLED is false, 4.0.0–4.0.12's names), a 304 while they match, a
// Content-Security-Policy on every answer, no Cache-Control on errors. The image for a path is a PNG
// of its own, the same every time.
import { createHash, createHmac } from 'node:crypto';
import { createServer, get } from 'node:http';
import { makePng } from './png.mjs';

const env = process.env;
const [command = ''] = process.argv.slice(2);
const bind = env.IMGPROXY_BIND ?? ':8080';
const [, host, port] = /^(.*):(\d+)$/.exec(bind) ?? [];
const TYPES = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', avif: 'image/avif', gif: 'image/gif' };

if (command === 'version') {
  console.log('4.0.12 (imgproxy-cache test stand-in)');
  process.exit(0);
}
if (command === 'health') {
  const target = `http://${host && host !== '0.0.0.0' ? host : '127.0.0.1'}:${port}/health`;
  const probe = get(target, (res) => {
    res.resume();
    process.exit(res.statusCode === 200 ? 0 : 1);
  });
  probe.on('error', () => process.exit(1));
  probe.setTimeout(3000, () => process.exit(1));
} else if (command !== '') {
  console.error(`imgproxy: unknown command ${command}`);
  process.exit(1);
} else {
  serve();
}

/** Whether the path's first segment signs the rest (any signature is fine without key and salt). */
function signed(path) {
  if (!env.IMGPROXY_KEY || !env.IMGPROXY_SALT) return true;
  const slash = path.indexOf('/', 1);
  const signature = path.slice(1, slash);
  const expected = createHmac('sha256', Buffer.from(env.IMGPROXY_KEY, 'hex'))
    .update(Buffer.concat([Buffer.from(env.IMGPROXY_SALT, 'hex'), Buffer.from(path.slice(slash))]))
    .digest('base64url');
  return signature === expected;
}

const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox";
/** the sources never change here: one date for all of them */
const SOURCE_LAST_MODIFIED = 'Thu, 01 Jan 2026 00:00:00 GMT';

/** The source part of an imgproxy path (`/plain/<url>@fmt`, or the last segment without its extension). */
const sourceOf = (path) =>
  /\/plain\/(.+?)(?:@[a-z0-9]+)?$/.exec(path)?.[1] ??
  path
    .split('/')
    .at(-1)
    .replace(/\.[a-z0-9]+$/, '');

function serve() {
  const ttl = Number(env.IMGPROXY_TTL ?? 31536000);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status, body) => {
      // imgproxy 4.0.6+ sends no Cache-Control on errors, and its CSP on every answer
      res.writeHead(status, { 'content-type': 'text/plain', 'content-security-policy': CSP, ...(status < 400 ? { 'cache-control': 'no-cache' } : {}) });
      res.end(body);
    };
    if (path === '/health') return text(200, 'imgproxy is running');
    // HEAD and OPTIONS: 200 with no body, nothing processed
    if (req.method === 'HEAD' || req.method === 'OPTIONS') return text(200, '');
    if (req.method !== 'GET') return text(405, 'Method not allowed');
    if (path.split('/').length < 3) return text(404, 'Invalid URL');
    if (!signed(path)) return text(403, 'Invalid signature');
    const format = (/@([a-z0-9]+)$/.exec(path) ?? /\.([a-z0-9]+)$/.exec(path))?.[1] ?? 'png';
    const body = makePng(path, 48, 48);
    const source = sourceOf(path);
    const validators = {};
    if (env.IMGPROXY_ETAG_ENABLED !== 'false') validators.etag = `"${createHash('md5').update(source).digest('hex')}"`;
    if (env.IMGPROXY_LAST_MODIFIED_ENABLED !== 'false') validators['last-modified'] = SOURCE_LAST_MODIFIED;
    const cacheControl = ttl > 0 ? `max-age=${ttl}, public` : 'no-cache';
    if (validators.etag && req.headers['if-none-match'] === validators.etag) {
      res.writeHead(304, { 'cache-control': cacheControl, 'content-security-policy': CSP, ...validators });
      return res.end();
    }
    const headers = {
      'content-type': TYPES[format] ?? 'image/png',
      'content-length': body.length,
      'cache-control': cacheControl,
      'content-disposition': `inline; filename="${source
        .split('/')
        .at(-1)
        .replace(/\.[a-z0-9]+$/, '')}.${format}"`,
      'content-security-policy': CSP,
      ...validators,
    };
    res.writeHead(200, headers);
    res.end(body);
  });
  server.listen(Number(port), host || undefined, () => console.log(`imgproxy stand-in listening on ${bind}`));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
