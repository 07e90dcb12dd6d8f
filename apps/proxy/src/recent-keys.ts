// The images this proxy is handing off, or handed off (or found uploaded) a moment ago. A repeated
// request for one of them skips the copy, the digest and the Redis round trip entirely: the hot
// path of a popular image costs nothing beyond streaming it. Bounded in entries; oldest forgotten
// first.

export class RecentKeys {
  private readonly expiries = new Map<string, number>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(key: string): boolean {
    const expiry = this.expiries.get(key);
    if (expiry === undefined) return false;
    if (expiry > this.now()) return true;
    this.expiries.delete(key);
    return false;
  }

  remember(key: string, ttlMs: number): void {
    if (this.maxEntries === 0) return;
    this.expiries.delete(key); // re-insert: Map order is age order
    this.expiries.set(key, this.now() + ttlMs);
    if (this.expiries.size > this.maxEntries) this.expiries.delete(this.expiries.keys().next().value!);
  }

  forget(key: string): void {
    this.expiries.delete(key);
  }

  get size(): number {
    return this.expiries.size;
  }
}
