// The images this proxy is handing off, or handed off (or found uploaded) a moment ago. A repeated
// request for one of them skips the copy, the digest and the Redis round trip entirely: the hot
// path of a popular image costs nothing beyond streaming it. With read-through, an image known to
// be on its way to the bucket is not looked for there. Bounded in entries; oldest forgotten first.

interface Entry {
  expiry: number;
  /** in the bucket (uploaded), or on its way there */
  uploaded: boolean;
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

  /** 'uploaded': in the bucket; 'pending': on its way there (being handed off, queued) */
  state(key: string): 'uploaded' | 'pending' | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiry > this.now()) return entry.uploaded ? 'uploaded' : 'pending';
    this.entries.delete(key);
    return undefined;
  }

  remember(key: string, ttlMs: number, uploaded = false): void {
    if (this.maxEntries === 0) return;
    this.entries.delete(key); // re-insert: Map order is age order
    this.entries.set(key, { expiry: this.now() + ttlMs, uploaded });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
