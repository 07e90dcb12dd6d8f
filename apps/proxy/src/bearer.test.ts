import * as crypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { bearerMatches } from './bearer.js';

vi.mock('node:crypto', async (original) => {
  const actual = await original<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

describe('bearerMatches (ADMIN_TOKEN)', () => {
  const token = 's3cret-token-of-some-length';

  it.each([
    [`Bearer ${token}`, true],
    [`Bearer ${'x'.repeat(token.length)}`, false], // same length, wrong
    [`Bearer ${token.slice(0, -1)}X`, false], // one character off
    [`Bearer ${token}x`, false],
    [`Bearer ${token.slice(0, 5)}`, false],
    [`bearer ${token}`, false],
    [token, false],
    ['', false],
    [undefined, false],
  ])('%s → %s', (header, ok) => {
    expect(bearerMatches(header, token)).toBe(ok);
  });

  it('compares in constant time (timingSafeEqual), whatever the length of the guess', () => {
    vi.mocked(crypto.timingSafeEqual).mockClear();
    bearerMatches('Bearer x', token);
    bearerMatches(`Bearer ${'y'.repeat(token.length)}`, token);
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(2);
  });
});
