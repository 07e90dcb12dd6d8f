// Work that must finish before the process exits (the Redis hand-off after a response ended).

export class Inflight {
  private readonly pending = new Set<Promise<unknown>>();

  track(work: Promise<unknown>): void {
    const settled = work.catch(() => undefined).finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  get size(): number {
    return this.pending.size;
  }

  /** Resolves true once everything tracked has settled, false if `timeoutMs` ran out first. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, left)));
      await Promise.race([Promise.all(this.pending), timeout]);
      clearTimeout(timer);
    }
    return true;
  }
}
