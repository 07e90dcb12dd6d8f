import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { normalizeFolder } from '../config/index.js';
import { cacheKeyOf, objectKeyOf, rawPathOf } from './cache-key.js';

// The seed's Elixir client signs img_path and hashes "/" <> signature <> img_path. The expected
// values below were computed with openssl and md5sum, not with this code.
const KEY = '943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881';
const SALT = '520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5';

function elixirFullPath(src: string, dimensions: string): string {
  // img_path = "/rs:#{mode}:#{dimensions}:1/dpr:2/g:ce/" <> Base.encode64(src) <> ".webp"
  const imgPath = `/rs:fit:${dimensions}:1/dpr:2/g:ce/${Buffer.from(src).toString('base64')}.webp`;
  const signature = createHmac('sha256', Buffer.from(KEY, 'hex'))
    .update(Buffer.concat([Buffer.from(SALT, 'hex'), Buffer.from(imgPath)]))
    .digest('base64url');
  return `/${signature}${imgPath}`;
}

describe('cache keys', () => {
  it('match what the Elixir client computes for a signed path', () => {
    const fullPath = elixirFullPath('https://example.com/images/cat.jpg', '300:300');
    expect(fullPath).toBe('/Rn0DwoqGtsPB3qvMzrv5R9SuZerzOJ1WlIhcdCX4FtQ/rs:fit:300:300:1/dpr:2/g:ce/aHR0cHM6Ly9leGFtcGxlLmNvbS9pbWFnZXMvY2F0LmpwZw==.webp');
    expect(cacheKeyOf(fullPath)).toBe('2ae94e83267f73e3bdf6c15bf1b7f30d');
  });

  it('hash the path exactly as sent: percent-encoding untouched', () => {
    const path = '/unsafe/rs:fit:100:100/plain/https%3A%2F%2Fexample.com%2Fa%20b.jpg@webp';
    expect(cacheKeyOf(path)).toBe('886314a38e0ec43543e3e253d94b3465');
    expect(cacheKeyOf(decodeURIComponent(path))).not.toBe('886314a38e0ec43543e3e253d94b3465');
  });

  it('leave the query string out', () => {
    expect(rawPathOf('/a/b.png?x=1&y=2')).toBe('/a/b.png');
    expect(rawPathOf('/a/b.png')).toBe('/a/b.png');
    expect(rawPathOf('/a/b.png?')).toBe('/a/b.png');
  });

  it('are lowercase hex of 32 digits', () => {
    expect(cacheKeyOf('/x')).toMatch(/^[0-9a-f]{32}$/);
  });

  it.each([
    ['', 'abc'],
    ['processed', 'processed/abc'],
    ['processed/', 'processed/abc'],
    ['/processed/', 'processed/abc'],
    ['a/b', 'a/b/abc'],
  ])('S3_FOLDER %j gives %s', (folder, key) => {
    expect(objectKeyOf(normalizeFolder(folder), 'abc')).toBe(key);
  });
});
