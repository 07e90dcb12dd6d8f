import { describe, expect, it } from 'vitest';
import { checkTarget, MAX_TARGET_LENGTH } from './request-target.js';

describe('checkTarget', () => {
  it.each([
    '/sig/rs:fit:300:300/plain/https://example.com/cat.jpg@webp',
    '/sig/rs:fit:300:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn.png?x=1',
    '/unsafe/plain/https%3A%2F%2Fexample.com%2Fa%20b.jpg',
    '/sig/plain/https://example.com/a..b/c.jpg', // dots inside a segment are fine
    '/sig/plain/https://example.com/.well-known/a.jpg',
    '/health',
  ])('forwards %s', (target) => expect(checkTarget(target)).toBeUndefined());

  it.each([
    ['http://evil.example/x', 400],
    ['*', 400],
    [undefined, 400],
    ['/sig/plain/https://example.com/a b.jpg', 400],
    ['/sig/plain/https://example.com/caf\u00e9.jpg', 400],
    ['/sig/plain/https://example.com/%zz.jpg', 400],
    ['/sig/plain/https://example.com/%4', 400],
    ['/sig/../admin', 400],
    ['/sig/./x', 400],
    ['/sig/%2e%2E/x', 400],
    ['/sig/x/..', 400],
    [`/${'a'.repeat(MAX_TARGET_LENGTH)}`, 414],
  ] as const)('refuses %s with %i', (target, status) => {
    expect(checkTarget(target)?.status).toBe(status);
  });
});
