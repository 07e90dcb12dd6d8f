import { describe, expect, it } from 'vitest';
import { sourceOfInput, sourceOfPath, sourceTag } from './image-source.js';

const CURIOSITY = 'http://example.com/images/curiosity.jpg';
const b64 = (s: string) => Buffer.from(s).toString('base64url');

describe('sourceOfPath (the source image of an imgproxy path)', () => {
  it.each([
    // the imgproxy documentation's own examples ("Generating the URL")
    ['/insecure/rs:fill:300:400:0/g:sm/aHR0cDovL2V4YW1w/bGUuY29tL2ltYWdl/cy9jdXJpb3NpdHku/anBn.png', CURIOSITY],
    ['/insecure/rs:fill:300:400:0/g:sm/plain/http://example.com/images/curiosity.jpg@png', CURIOSITY],
    ['/insecure/rs:fill:300:400:0/g:sm/plain/http%3A%2F%2Fexample.com%2Fimages%2Fcuriosity.jpg@png', CURIOSITY],
    ['/AfrOrF3gWeDA6VOlDG4TzxMv39O7MXnF4CXpKUwGqRM/rs:fit:300:300/plain/http://example.com/images/curiosity.jpg', CURIOSITY],
    // base64 without an extension, unsplit, and standard base64's alphabet
    [`/sig/w:100/${b64(CURIOSITY)}`, CURIOSITY],
    [`/sig/w:100/h:50/q:80/${b64(CURIOSITY)}.webp`, CURIOSITY],
    // presets: pr:name, and IMGPROXY_ONLY_PRESETS' bare names (joined by ":", or one alone)
    ['/sig/pr:thumbnail/plain/http://example.com/images/curiosity.jpg@webp', CURIOSITY],
    ['/sig/thumbnail/plain/http://example.com/images/curiosity.jpg', CURIOSITY],
    [`/sig/thumbnail:blurry/${b64(CURIOSITY)}.png`, CURIOSITY],
    [`/sig/thumbnail/${b64(CURIOSITY)}.png`, CURIOSITY],
    // other schemes imgproxy reads
    ['/sig/rs:fit:10:10/plain/local:///photo.jpg@webp', 'local:///photo.jpg'],
    ['/sig/rs:fit:10:10/plain/s3://bucket/key/photo.jpg', 's3://bucket/key/photo.jpg'],
    // an @ in the URL itself: the last one starts the extension
    ['/sig/plain/https://user@example.com/a.jpg@png', 'https://user@example.com/a.jpg'],
  ])('%s → %s', (path, url) => {
    expect(sourceOfPath(path)).toEqual({ url, tag: sourceTag(url) });
  });

  it('gives relative sources IMGPROXY_BASE_URL in front, plain and base64', () => {
    const base = 'http://example.com/';
    expect(sourceOfPath('/sig/rs:fit:300:300/plain/images/curiosity.jpg@png', base)).toEqual({ url: CURIOSITY, tag: sourceTag(CURIOSITY) });
    expect(sourceOfPath(`/sig/rs:fit:300:300/${b64('images/curiosity.jpg')}.png`, base)).toEqual({ url: CURIOSITY, tag: sourceTag(CURIOSITY) });
    expect(sourceOfPath('/sig/rs:fit:300:300/plain/images/curiosity.jpg')).toMatchObject({ problem: expect.stringMatching(/IMGPROXY_BASE_URL/) });
  });

  it('says enc/ (imgproxy Pro) sources cannot be read, and that a path without a source names none', () => {
    expect(sourceOfPath('/sig/rs:fit:300:300/enc/d7NOBtsTu7ICs7b8b_hvmKD2QvMFqG.jpg')).toEqual({ encrypted: true });
    expect(sourceOfPath('/health')).toMatchObject({ problem: expect.any(String) });
    expect(sourceOfPath('/sig/rs:fit:300:300')).toMatchObject({ problem: expect.any(String) });
  });

  it('every variant of a source has its tag: sizes, formats, plain, percent-encoded and base64 forms', () => {
    const variants = [
      '/a/rs:fit:100:100/plain/https://example.com/cat.jpg@webp',
      '/b/rs:fill:300:200/q:70/plain/https%3A%2F%2Fexample.com%2Fcat.jpg@avif',
      `/c/w:640/${b64('https://example.com/cat.jpg')}.png`,
      '/d/pr:thumb/plain/https://example.com/cat.jpg',
    ];
    const tags = new Set(variants.map((p) => (sourceOfPath(p) as { tag: string }).tag));
    expect(tags.size).toBe(1);
    expect((sourceOfPath('/a/rs:fit:100:100/plain/https://example.com/dog.jpg@webp') as { tag: string }).tag).not.toBe([...tags][0]);
  });
});

describe('sourceOfInput (a source as an operator gives it)', () => {
  it.each([
    [CURIOSITY, CURIOSITY],
    ['http%3A%2F%2Fexample.com%2Fimages%2Fcuriosity.jpg', CURIOSITY],
    [b64(CURIOSITY), CURIOSITY],
    ['aHR0cDovL2V4YW1wbGUuY29tL2ltYWdlcy9jdXJpb3NpdHkuanBn', CURIOSITY],
  ])('%s → %s', (input, url) => {
    expect(sourceOfInput(input)).toEqual({ url, tag: sourceTag(url) });
  });

  it('takes relative sources against IMGPROXY_BASE_URL, and refuses nothing or a non-URL', () => {
    expect(sourceOfInput('images/curiosity.jpg', 'http://example.com/')).toEqual({ url: CURIOSITY, tag: sourceTag(CURIOSITY) });
    expect(sourceOfInput('')).toMatchObject({ problem: 'no source URL given' });
    expect(sourceOfInput('not a url')).toMatchObject({ problem: expect.any(String) });
  });
});
