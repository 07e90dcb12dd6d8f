import { describe, expect, it } from 'vitest';
import { CappedCapture, CaptureTally } from './capture.js';

describe('CappedCapture', () => {
  it('keeps a body up to the cap, byte-exact', () => {
    const capture = new CappedCapture(10);
    capture.push(Buffer.from('hello'));
    capture.push(Buffer.from('world'));
    expect(Buffer.concat(capture.captured()!).toString()).toBe('helloworld');
  });

  it('drops everything once the body outgrows the cap', () => {
    const capture = new CappedCapture(10);
    capture.push(Buffer.from('hello'));
    capture.push(Buffer.from('world!'));
    expect(capture.captured()).toBeUndefined();
    capture.push(Buffer.from('x'));
    expect(capture.captured()).toBeUndefined();
  });

  it('accounts what it holds in a shared tally, and gives it back', () => {
    const tally = new CaptureTally();
    const a = new CappedCapture(10, tally);
    const b = new CappedCapture(10, tally);
    a.push(Buffer.alloc(6));
    b.push(Buffer.alloc(4));
    expect(tally.held).toBe(10);
    a.push(Buffer.alloc(6)); // overflows: a lets go of its 6
    expect(tally.held).toBe(4);
    b.release();
    expect(tally.held).toBe(0);
    expect(tally.peak).toBe(10);
  });
});
