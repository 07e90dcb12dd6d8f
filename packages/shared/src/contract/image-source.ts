import { createHash } from 'node:crypto';

// The source image of an imgproxy path, as imgproxy reads it (docs: "Generating the URL"):
//
//   /<signature>/<options>/plain/<percent-encoded or plain URL>[@<extension>]
//   /<signature>/<options>/<base64url URL, optionally split by "/">[.<extension>]
//   /<signature>/<options>/enc/<encrypted URL>[.<extension>]      (imgproxy Pro: unreadable here)
//
// Options are the segments holding a colon (`rs:fit:300:300`, `pr:thumb`, presets joined by ":");
// with IMGPROXY_ONLY_PRESETS a segment may be a bare preset name. A relative source gets
// IMGPROXY_BASE_URL in front, as imgproxy does. Every variant of one source (sizes, formats, plain
// or base64) shares its canonical URL, and so its tag: the MD5 of that URL.

export type ImageSource =
  | { url: string; tag: string }
  | { encrypted: true } // imgproxy Pro's enc/: stored as always, not purgeable by source
  | { problem: string };

/** The source of an imgproxy request path (no query), with IMGPROXY_BASE_URL for relative ones. */
export function sourceOfPath(path: string, baseUrl = ''): ImageSource {
  const segments = path.split('?')[0]!.split('/').slice(2); // the signature is the first segment
  const plain = segments.indexOf('plain');
  if (plain >= 0) {
    let source = segments.slice(plain + 1).join('/');
    const at = source.lastIndexOf('@');
    if (at >= 0) source = source.slice(0, at);
    return canonical(safeDecode(source), baseUrl);
  }
  if (segments.includes('enc')) return { encrypted: true };
  // base64: the segments after the options; a bare segment that does not decode with the rest is
  // an IMGPROXY_ONLY_PRESETS preset name
  let rest = segments.filter((s) => !s.includes(':'));
  while (rest.length > 0) {
    const url = fromBase64(rest.join('').replace(/\.[A-Za-z0-9]+$/, ''));
    if (url !== undefined) return canonical(url, baseUrl);
    rest = rest.slice(1);
  }
  return { problem: `${path} names no source image imgproxy would read (plain/..., base64 or enc/...)` };
}

/**
 * A source as an operator gives it (`--source`): a plain URL, a percent-encoded one, or its
 * base64url form; relative to IMGPROXY_BASE_URL when it has no scheme.
 */
export function sourceOfInput(input: string, baseUrl = ''): ImageSource {
  const text = input.trim();
  if (text === '') return { problem: 'no source URL given' };
  if (/^[a-z][a-z0-9+.-]*:/i.test(text) || text.startsWith('/')) return canonical(text, baseUrl);
  if (/%[0-9a-f]{2}/i.test(text)) return canonical(safeDecode(text), baseUrl);
  const decoded = fromBase64(text);
  if (decoded !== undefined) return canonical(decoded, baseUrl);
  return canonical(text, baseUrl);
}

/** The tag of a path's source, when it has one imgproxy would read (not enc/); else undefined. */
export function sourceTagOfPath(path: string, baseUrl = ''): string | undefined {
  const source = sourceOfPath(path, baseUrl);
  return 'tag' in source ? source.tag : undefined;
}

/** The tag of a source: what CDNs purge by, and what the index is keyed by. */
export function sourceTag(url: string): string {
  return createHash('md5').update(url).digest('hex');
}

function canonical(url: string, baseUrl: string): ImageSource {
  const full = /^[a-z][a-z0-9+.-]*:/i.test(url) ? url : `${baseUrl}${url}`;
  if (!/^[a-z][a-z0-9+.-]*:./i.test(full))
    return { problem: `"${url}" is not a URL${baseUrl ? '' : ' (and IMGPROXY_BASE_URL is not set for relative sources)'}` };
  return { url: full, tag: sourceTag(full) };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A base64url (or base64) string that decodes to printable text looking like a URL or a path. */
function fromBase64(text: string): string | undefined {
  if (text.length < 4 || !/^[A-Za-z0-9_\-+/=]+$/.test(text)) return undefined;
  const decoded = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
  if (!/^[\x21-\x7e]+$/.test(decoded)) return undefined;
  // a URL (local:///, s3://, http://...), or a relative source for IMGPROXY_BASE_URL
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(decoded) || (/^[\w\-.~/%]+$/.test(decoded) && /[./]/.test(decoded)) ? decoded : undefined;
}
