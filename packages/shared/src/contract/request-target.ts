// Which request targets the proxy forwards. imgproxy paths are printable ASCII (signatures and
// base64 are URL-safe; plain sources are percent-encoded), so anything else is a client error,
// answered 4xx here rather than a 5xx from deeper down (undici refuses some of these itself).

/** Longest request target accepted (Node's own header limit, 16 KiB, applies too). */
export const MAX_TARGET_LENGTH = 16 * 1024;

export type TargetProblem = { status: 400 | 414; reason: string };

const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;
const BAD_PERCENT = /%(?![0-9a-fA-F]{2})/;
// "." and ".." segments, also percent-encoded: a proxy or server that normalises them would
// fetch another path than the one the key was computed from.
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:\/|$)/i;

export function checkTarget(target: string | undefined): TargetProblem | undefined {
  if (!target?.startsWith('/')) {
    // absolute-form ("http://host/...") or "*": would name another host, or nothing imgproxy serves
    return { status: 400, reason: 'Bad request target: expected a path starting with "/"' };
  }
  if (target.length > MAX_TARGET_LENGTH) return { status: 414, reason: `Request target longer than ${MAX_TARGET_LENGTH} bytes` };
  if (!PRINTABLE_ASCII.test(target)) return { status: 400, reason: 'Bad request target: characters outside printable ASCII must be percent-encoded' };
  if (BAD_PERCENT.test(target)) return { status: 400, reason: 'Bad request target: malformed percent-encoding' };
  const path = target.split('?', 1)[0]!;
  if (DOT_SEGMENT.test(path)) return { status: 400, reason: 'Bad request target: "." and ".." path segments are not accepted' };
  return undefined;
}
