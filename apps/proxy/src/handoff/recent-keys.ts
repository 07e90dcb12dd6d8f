// The images this proxy is handing off, or handed off (or found uploaded) a moment ago. A repeated
// request for one of them skips the copy, the digest and the Redis round trip entirely: the hot
// path of a popular image costs nothing beyond streaming it. With read-through, an image being
// handed off right now is not looked for in the bucket. Bounded in entries; oldest forgotten first.

/** being handed off to Redis right now; queued for upload; in the bucket */
export type RecentState = 'handing-off' | 'queued' | 'uploaded';

interface Entry {
  expiry: number;
  state: RecentState;
}

export class RecentKeys {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(key: string): boolean {
    return this.state(key) !== undefined;
  }

  state(key: string): RecentState | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiry > this.now()) return entry.state;
    this.entries.delete(key);
    return undefined;
  }

  remember(key: string, ttlMs: number, state: RecentState = 'queued'): void {
    if (this.maxEntries === 0) return;
    this.entries.delete(key); // re-insert: Map order is age order
    this.entries.set(key, { expiry: this.now() + ttlMs, state });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  /**
   * The bucket was found without the image: what is remembered of its upload is out of date, so
   * that the next hand-off stores it again; only a hand-off under way right now stays (the one
   * rule for every way the proxy learns it).
   */
  bucketLost(key: string): void {
    const state = this.state(key);
    if (state !== undefined && state !== 'handing-off') this.entries.delete(key);
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
