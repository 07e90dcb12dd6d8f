import { describe, expect, it } from 'vitest';
import { etagOf, MemoryTier } from './memory-tier.js';

const image = (bytes: number, fill = 1) => Buffer.alloc(bytes, fill);
const CC = { 'cache-control': 'max-age=3600, public' };

describe('MemoryTier', () => {
  it('holds at most its bound in bytes, and lets the least recently used go first', () => {
    const evicted: string[] = [];
    const tier = new MemoryTier(3 * 1024 + 3 * 512, (reason) => evicted.push(reason));
    tier.put('a', image(1024), CC);
    tier.put('b', image(1024), CC);
    tier.put('c', image(1024), CC);
    expect(tier.bytes).toBe(3 * (1024 + 512));
    expect(tier.get('a')).toBeDefined(); // used: b is now the oldest
    tier.put('d', image(1024), CC);
    expect(tier.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].every((k) => tier.get(k) !== undefined)).toBe(true);
    expect(tier.bytes).toBeLessThanOrEqual(tier.maxBytes);
    expect(evicted).toEqual(['space']);
    // one larger image makes room for itself
    tier.put('e', image(2048), CC);
    expect(tier.size).toBe(2);
    expect(tier.bytes).toBeLessThanOrEqual(tier.maxBytes);
  });

  it('keeps nothing larger than its bound, nothing when off, and counts a replaced entry once', () => {
    const tier = new MemoryTier(4096);
    expect(tier.put('big', image(4096), CC)).toBe(false);
    expect(tier.size).toBe(0);
    tier.put('a', image(100), CC);
    tier.put('a', image(200), CC);
    expect(tier.bytes).toBe(200 + 512);
    expect(tier.get('a')?.body.length).toBe(200);
    const off = new MemoryTier(0);
    expect(off.enabled).toBe(false);
    expect(off.put('a', image(10), CC)).toBe(false);
  });

  it('refuses what a shared cache may not keep, and drops an entry once its Cache-Control runs out', () => {
    let now = 1_000;
    const evicted: string[] = [];
    const tier = new MemoryTier(
      1 << 20,
      (reason) => evicted.push(reason),
      () => now,
    );
    for (const cacheControl of ['no-store', 'private', 'no-cache', 'max-age=0']) {
      expect(tier.put(cacheControl, image(10), { 'cache-control': cacheControl })).toBe(false);
    }
    tier.put('short', image(10), { 'cache-control': 'max-age=2' });
    tier.put('forever', image(10), {});
    now = 2_999;
    expect(tier.get('short')).toBeDefined();
    now = 3_000;
    expect(tier.get('short')).toBeUndefined();
    expect(tier.get('forever')).toBeDefined();
    expect(tier.bytes).toBe(10 + 512);
    expect(evicted).toEqual(['expired']);
  });

  it('a purge removes the image, and a read begun before it does not bring it back', () => {
    const evicted: string[] = [];
    const tier = new MemoryTier(1 << 20, (reason) => evicted.push(reason));
    tier.put('k', image(10), CC);
    const readBegun = tier.mark();
    tier.purge('k');
    expect(tier.get('k')).toBeUndefined();
    expect(tier.put('k', image(10), CC, { since: readBegun })).toBe(false);
    expect(tier.put('k', image(10), CC, { since: tier.mark() })).toBe(true);
    expect(evicted).toEqual(['purged']);
  });

  it("makes S3's ETag of a single PUT: the quoted MD5 of the bytes", () => {
    expect(etagOf(Buffer.from('hello'))).toBe('"5d41402abc4b2a76b9719d911017c592"');
  });
});
