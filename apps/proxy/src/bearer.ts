import { createHash, timingSafeEqual } from 'node:crypto';

// The purge token's check. Compared as SHA-256 digests with timingSafeEqual: the time it takes
// says nothing of how much of a guess was right, nor of the token's length.

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Whether an Authorization header carries `Bearer <token>`. */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  return timingSafeEqual(digest(authorization ?? ''), digest(`Bearer ${token}`));
}
