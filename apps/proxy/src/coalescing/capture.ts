// Copies a streamed body into memory up to a cap. Unlike ReadableStream.tee(), it never holds
// more than `maxBytes` (the slower branch of a tee buffers without limit): once a body outgrows
// the cap, what was kept is released and the rest only streams to the client.

/** Bytes held by all captures of a process right now, and the most ever held (metrics, tests). */
export class CaptureTally {
  held = 0;
  peak = 0;
  add(n: number): void {
    this.held += n;
    if (this.held > this.peak) this.peak = this.held;
  }
}

export class CappedCapture {
  private chunks: Buffer[] = [];
  private size = 0;
  private overflowed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly tally: CaptureTally = new CaptureTally(),
  ) {}

  push(chunk: Buffer): void {
    if (this.overflowed) return;
    if (this.size + chunk.length > this.maxBytes) {
      this.overflowed = true;
      this.release();
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.tally.add(chunk.length);
  }

  /** The captured bytes as they arrived, or undefined if the cap was exceeded. */
  captured(): readonly Buffer[] | undefined {
    return this.overflowed ? undefined : this.chunks;
  }

  release(): void {
    this.chunks = [];
    this.tally.add(-this.size);
    this.size = 0;
  }
}
