import { describe, expect, it } from 'vitest';
import { countAsHeld, pastBound } from './memory.js';

describe('the forced-collection bound', () => {
  it('does not count bytes held on purpose (the memory tier) against it, until they are let go', () => {
    const MiB = 2 ** 20;
    expect(pastBound(100 * MiB, 64 * MiB)).toBe(true);
    const uncount = countAsHeld(() => 50 * MiB);
    expect(pastBound(100 * MiB, 64 * MiB)).toBe(false);
    expect(pastBound(120 * MiB, 64 * MiB)).toBe(true);
    uncount();
    expect(pastBound(100 * MiB, 64 * MiB)).toBe(true);
  });
});
