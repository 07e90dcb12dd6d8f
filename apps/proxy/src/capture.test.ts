import { describe, expect, it } from 'vitest';
import { CappedCapture } from './capture.js';

describe('CappedCapture', () => {
  it('keeps a body up to the cap, byte-exact', () => {
    const capture = new CappedCapture(10);
    capture.push(Buffer.from('hello'));
    capture.push(Buffer.from('world'));
    expect(capture.bytes()?.toString()).toBe('helloworld');
  });

  it('drops everything once the body outgrows the cap', () => {
    const capture = new CappedCapture(10);
    capture.push(Buffer.from('hello'));
    capture.push(Buffer.from('world!'));
    expect(capture.overflow).toBe(true);
    expect(capture.bytes()).toBeUndefined();
    capture.push(Buffer.from('x'));
    expect(capture.bytes()).toBeUndefined();
  });
});
