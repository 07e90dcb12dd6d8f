import { describe, expect, it } from 'vitest';
import { CaptureTally } from './capture.js';

describe('CaptureTally', () => {
  it('counts what is held now and the most ever held', () => {
    const tally = new CaptureTally();
    tally.add(6);
    tally.add(4);
    tally.add(-6);
    expect({ held: tally.held, peak: tally.peak }).toEqual({ held: 4, peak: 10 });
  });
});
