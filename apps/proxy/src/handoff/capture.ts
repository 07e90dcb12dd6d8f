// Bytes of response bodies a process holds for caching and coalescing (the flights' copies and the
// payloads on their way to Redis): a gauge, and the most ever held (metrics, tests).

export class CaptureTally {
  held = 0;
  peak = 0;
  add(n: number): void {
    this.held += n;
    if (this.held > this.peak) this.peak = this.held;
  }
}
