import { describe, expect, it } from 'vitest';
import { requestedFormat } from './imgproxy-format.js';

describe('requestedFormat', () => {
  it.each([
    ['/sig/rs:fit:300:300/plain/https://example.com/cat.jpg@webp', 'webp'],
    ['/sig/rs:fit:300:300/plain/https://example.com/cat.jpg', undefined],
    ['/sig/plain/https://example.com/a%40b.jpg@png', 'png'],
    ['/sig/plain/https://example.com/a@b.jpg@png', undefined], // two "@": imgproxy refuses it
    ['/sig/rs:fit:300:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn.avif', 'avif'],
    ['/sig/rs:fit:300:300/aHR0cHM6Ly9le/GFtcGxlLmNvbS9j/YXQuanBn.JPG', 'jpg'], // split base64
    ['/sig/rs:fit:300:300/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn', undefined],
    ['/sig/format:webp/aHR0cHM6Ly9leGFtcGxlLmNvbS9jYXQuanBn', 'webp'],
    ['/sig/f:png/rs:fit:1:1/plain/https://x/y.jpg', 'png'],
    ['/sig/ext:avif/plain/https://x/y.jpg', 'avif'],
    ['/sig/format:webp/plain/https://x/y.jpg@png', 'png'], // the extension wins
    ['/sig/rs:fit:300:300/dpr:2/plain/https://x/y.jpg', undefined], // "dpr:2" is not a format
    ['/sig/preset:thumb/plain/https://x/y.jpg', undefined],
    ['/insecure/plain/local:///cat.jpg@webp', 'webp'],
  ])('%s → %s', (path, format) => {
    expect(requestedFormat(path)).toBe(format);
  });
});
