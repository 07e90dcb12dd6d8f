import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

// Hop-by-hop headers describe one connection, not the message (RFC 9110 §7.6.1), so a proxy must
// not forward them either way; Connection may name more of them. Host is replaced by imgproxy's
// own. Everything else passes untouched: Accept and client hints (imgproxy picks formats and sizes
// from them), Authorization (IMGPROXY_SECRET), If-None-Match/If-Modified-Since, X-Request-ID.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  if (!value) return new Set();
  return new Set(value.split(',').map((t) => t.trim().toLowerCase()));
}

function endToEnd(headers: IncomingHttpHeaders, drop: ReadonlySet<string>): Record<string, string | string[]> {
  const named = connectionTokens(headers);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || drop.has(name)) continue;
    out[name] = value;
  }
  return out;
}

const REQUEST_DROP = new Set(['host', 'x-forwarded-for', 'content-length']);

/** Headers for the request to imgproxy, with the client appended to X-Forwarded-For. */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, clientAddress: string | undefined): Record<string, string | string[]> {
  const out = endToEnd(headers, REQUEST_DROP);
  const prior = headers['x-forwarded-for'];
  const chain = [prior, clientAddress].filter((v): v is string => typeof v === 'string' && v !== '');
  if (chain.length > 0) out['x-forwarded-for'] = chain.join(', ');
  return out;
}

const RESPONSE_DROP = new Set<string>();

/** imgproxy's response headers for the client. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  return endToEnd(headers, RESPONSE_DROP);
}
