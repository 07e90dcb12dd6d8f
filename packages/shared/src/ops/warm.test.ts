import { describe, expect, it } from 'vitest';
import { parseWarmLine } from './warm.js';

describe('parseWarmLine (one line of a warm list)', () => {
  it.each([
    ['/sig/rs:fit:300:200/plain/https://example.com/a.jpg@webp', { target: '/sig/rs:fit:300:200/plain/https://example.com/a.jpg@webp' }],
    ['  /sig/plain/a.jpg  ', { target: '/sig/plain/a.jpg' }],
    ['/sig/plain/a.jpg?cb=1', { target: '/sig/plain/a.jpg?cb=1' }],
    ['https://images.example.com/sig/plain/a.jpg@png?x=1', { target: '/sig/plain/a.jpg@png?x=1' }],
    ['', undefined],
    ['   ', undefined],
    ['# a comment', undefined],
    ['ftp://example.com/a.jpg', { problem: '"ftp://example.com/a.jpg" is neither a path (starting with /) nor an http(s) URL' }],
    ['sig/plain/a.jpg', { problem: '"sig/plain/a.jpg" is neither a path (starting with /) nor an http(s) URL' }],
    ['/sig/plain/a.jpg /sig/plain/b.jpg', { problem: '"/sig/plain/a.jpg /sig/plain/b.jpg" holds a space: one path per line' }],
  ])('%j → %j', (line, expected) => {
    expect(parseWarmLine(line)).toEqual(expected);
  });
});
