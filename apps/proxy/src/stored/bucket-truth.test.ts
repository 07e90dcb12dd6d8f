import { describe, expect, it } from 'vitest';
import type { BucketReader, Lookup } from './bucket-reader.js';
import { BucketTruth, confirmation } from './bucket-truth.js';
import { type MemoryEntry, MemoryTier } from './memory-tier.js';

const headers = { 'cache-control': 'max-age=3600', etag: '"imgproxy-etag"' };
/** what a HEAD found: S3's ETag of the object (imgproxy's, served, is another matter) */
const found = (objectEtag?: string): Lookup => ({ status: 200, body: Buffer.alloc(0), headers: { etag: '"imgproxy-etag"' }, objectEtag });

describe('confirmation (what the bucket said of an image in memory)', () => {
  const entry = { headers, objectEtag: '"abc"' } as unknown as MemoryEntry;
  it.each([
    [found('"abc"'), 'present'],
    [found('W/"abc"'), 'present'],
    [found(), 'present'], // a server that sends no ETag: present is all it says
    [found('"other"'), 'replaced'],
    ['absent', 'missing'],
    ['unavailable', 'error'],
  ] as [Lookup, string][])('%j → %s', (lookup, expected) => {
    expect(confirmation(entry, lookup)).toBe(expected);
  });
});

describe('BucketTruth', () => {
  /** A bucket whose HEADs answer when the test says. */
  function bucket() {
    const asked: ((l: Lookup) => void)[] = [];
    const reader = { lookup: () => new Promise<Lookup>((resolve) => asked.push(resolve)) } as unknown as BucketReader;
    return { reader, asked };
  }
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it('asks once per window, however many hits, and never while an answer is awaited', async () => {
    let now = 0;
    const memory = new MemoryTier(1 << 20, undefined, () => now);
    memory.put('k', Buffer.from('x'), headers, { inBucket: true, objectEtag: '"abc"' });
    const { reader, asked } = bucket();
    const truth = new BucketTruth(memory, reader, { windowMs: 1000, restore: () => true, now: () => now });
    const entry = memory.get('k')!;
    truth.check('k', entry);
    expect(asked.length).toBe(0); // within the window
    now = 1000;
    for (let i = 0; i < 50; i++) truth.check('k', entry);
    expect(asked.length).toBe(1);
    now = 1500;
    truth.check('k', entry);
    expect(asked.length).toBe(1);
    asked[0]!(found('"abc"'));
    await settle();
    now = 2400;
    truth.check('k', entry);
    expect(asked.length).toBe(1); // trusted from the answer on
    now = 2600;
    truth.check('k', entry);
    expect(asked.length).toBe(2);
  });

  it('restores a lost image the bucket had; drops one it never had, and one another writer replaced; keeps it on an error', async () => {
    let now = 0;
    const evicted: string[] = [];
    const memory = new MemoryTier(
      1 << 20,
      (reason) => evicted.push(reason),
      () => now,
    );
    const restored: string[] = [];
    const { reader, asked } = bucket();
    const truth = new BucketTruth(memory, reader, { windowMs: 10, restore: (key) => restored.push(key) > 0, now: () => now });
    const ask = async (key: string, answer: Lookup) => {
      now += 100;
      truth.check(key, memory.get(key)!);
      asked.at(-1)!(answer);
      await settle();
    };
    memory.put('had', Buffer.from('x'), headers, { inBucket: true, objectEtag: '"abc"' });
    memory.put('never', Buffer.from('x'), headers);
    memory.put('other', Buffer.from('x'), headers, { inBucket: true, objectEtag: '"abc"' });
    memory.put('down', Buffer.from('x'), headers, { inBucket: true, objectEtag: '"abc"' });
    await ask('had', 'absent');
    await ask('never', 'absent');
    await ask('other', found('"new"'));
    await ask('down', 'unavailable');
    expect(restored).toEqual(['had']);
    expect(evicted).toEqual(['missing', 'replaced']);
    expect(['had', 'never', 'other', 'down'].map((k) => memory.get(k) !== undefined)).toEqual([true, false, false, true]);
    // restored, the image is one handed off again: missing once more, it leaves memory
    await ask('had', 'absent');
    expect(restored).toEqual(['had']);
    expect(memory.get('had')).toBeUndefined();
  });

  it('an answer about an entry purged meanwhile changes nothing', async () => {
    let now = 0;
    const memory = new MemoryTier(1 << 20, undefined, () => now);
    memory.put('k', Buffer.from('x'), headers, { inBucket: true, objectEtag: '"abc"' });
    const restored: string[] = [];
    const { reader, asked } = bucket();
    const truth = new BucketTruth(memory, reader, { windowMs: 10, restore: (key) => restored.push(key) > 0, now: () => now });
    now = 100;
    truth.check('k', memory.get('k')!);
    memory.purge('k');
    asked[0]!('absent');
    await settle();
    expect(restored).toEqual([]);
  });
});
