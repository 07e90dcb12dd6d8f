import { EventEmitter } from 'node:events';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { CaptureTally } from '../handoff/capture.js';

// One response on its way to clients: imgproxy's (or a stored image's), delivered to the client
// that asked first and to the followers that asked for the same image meanwhile (coalescing).
// A response that may be shared is kept whole in memory as it arrives (it is at most
// CACHE_MAX_BYTES: the capture for the bucket holds it anyway), so each client reads it at its
// own pace: a slow client never slows the others or the download. Past the cap (a chunked body
// that grew) nobody new may join, kept bytes are dropped as soon as every client has them, and the
// slowest client sets the pace.

/** A client of the flight: its response and how far it has read. */
class Subscriber {
  /** index of the next chunk to write */
  next = 0;
  draining = false;
  done = false;

  constructor(
    readonly res: ServerResponse,
    private readonly flight: Flight,
  ) {}

  /** Writes what it has not written yet, until the client pushes back. */
  pump(): void {
    const f = this.flight;
    while (!this.draining && this.next < f.base + f.chunks.length) {
      const chunk = f.chunks[this.next - f.base]!;
      this.next += 1;
      if (!this.res.write(chunk)) {
        this.draining = true;
        this.res.once('drain', () => {
          this.draining = false;
          this.pump();
          f.subscriberDrained();
        });
      }
    }
    if (f.ended && this.next === f.base + f.chunks.length && !this.done) {
      this.done = true;
      this.res.end();
    }
  }
}

/**
 * Events: 'abandoned' (the last client left before the end: the download is aborted), 'ended' (the
 * body is complete: `body()` holds it, if kept whole), 'failed' (the download broke).
 */
export class Flight extends EventEmitter {
  /** kept chunks, from index `base` on */
  chunks: Buffer[] = [];
  base = 0;
  received = 0;
  ended = false;
  /** shared: kept whole for the clients (and the capture); false: streamed to one client */
  private sharing = false;
  /** past the cap: nothing new may join, the slowest client sets the pace */
  overflowed = false;
  private status = 0;
  private headers: OutgoingHttpHeaders = {};
  private readonly subscribers = new Set<Subscriber>();
  private source: Readable | undefined;
  private begun = false;
  /** clients waiting to know whether they may share the response (they keep the download going) */
  private holds = 0;
  /** undici's abort signal for the download (an EventEmitter: cheap, see imgproxy/upstream.ts) */
  readonly abort = new EventEmitter();

  constructor(
    private readonly maxBytes: number,
    private readonly tally: CaptureTally,
  ) {
    super();
  }

  /** clients of it, those waiting to join included */
  get clients(): number {
    return this.subscribers.size + this.holds;
  }

  /** the response has started (status and headers known) */
  get started(): boolean {
    return this.begun;
  }

  /** A client waiting to know whether it may join keeps the download going; call the result when it knows. */
  hold(): () => void {
    this.holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds -= 1;
      this.abandonIfUnwanted();
    };
  }

  /** Nobody wants the response any more: stop downloading it. */
  private abandonIfUnwanted(): void {
    if (this.ended || this.clients > 0) return;
    this.abort.emit('abort');
    this.emit('abandoned');
  }

  /** Whether a new client may still join: the response is shared, and whole so far. */
  get joinable(): boolean {
    return !this.ended && !this.overflowed && (!this.begun || this.sharing);
  }

  /** Whether a client joining now gets the whole response: nothing of it let go yet. */
  get replayable(): boolean {
    return this.base === 0;
  }

  /** Adds a client; it gets the response from the start (the flight keeps it whole). */
  join(res: ServerResponse): void {
    const subscriber = new Subscriber(res, this);
    this.subscribers.add(subscriber);
    res.once('close', () => {
      this.subscribers.delete(subscriber);
      if (!subscriber.done) this.abandonIfUnwanted();
      this.maybeSettled();
    });
    if (this.begun) {
      res.writeHead(this.status, this.headers);
      subscriber.pump();
    }
  }

  /**
   * The response starts. `share`: keep it whole for every client (it may be shared, and
   * captured); otherwise it streams to the one client with the download paused when it pushes
   * back.
   */
  start(status: number, headers: OutgoingHttpHeaders, body: Readable | undefined, share: boolean): void {
    this.status = status;
    this.headers = headers;
    this.sharing = share;
    this.begun = true;
    this.source = body;
    for (const s of this.subscribers) s.res.writeHead(status, headers);
    if (!body) return;
    if (this.clients === 0) {
      body.destroy(); // everyone left while it was on its way
      this.emit('abandoned');
      return;
    }
    body.on('data', (chunk: Buffer) => this.push(chunk));
    body.once('end', () => this.finish());
    body.once('error', (error) => this.fail(error));
  }

  /** A whole response at once (a stored image, an error of our own). */
  respond(status: number, headers: OutgoingHttpHeaders, bytes: Buffer | undefined): void {
    this.start(status, headers, undefined, true);
    if (bytes && bytes.length > 0) this.push(bytes);
    this.finish();
  }

  private push(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.sharing && !this.overflowed && this.received > this.maxBytes) {
      // Too large to keep whole: streamed from here on, at the slowest client's pace.
      this.overflowed = true;
    }
    this.chunks.push(chunk);
    this.tally.add(chunk.length);
    for (const s of this.subscribers) s.pump();
    if (!this.sharing || this.overflowed) {
      this.dropWritten();
      if ([...this.subscribers].some((s) => s.draining)) this.source?.pause();
    }
  }

  /** A client caught up: a paused download (one client, or past the cap) goes on. */
  subscriberDrained(): void {
    if (!this.sharing || this.overflowed) {
      this.dropWritten();
      if (![...this.subscribers].some((s) => s.draining)) this.source?.resume();
    }
  }

  /** Drops the chunks every client has written (streaming, and past the cap). */
  private dropWritten(): void {
    let upTo = this.base + this.chunks.length;
    for (const s of this.subscribers) upTo = Math.min(upTo, s.next);
    const drop = upTo - this.base;
    if (drop <= 0) return;
    for (const c of this.chunks.splice(0, drop)) this.tally.add(-c.length);
    this.base = upTo;
  }

  private finish(): void {
    this.ended = true;
    for (const s of this.subscribers) s.pump();
    this.emit('ended');
    this.maybeSettled();
  }

  /** The download broke: every client's response ends with an error (never a hang). */
  private fail(error: Error): void {
    this.emit('failed', error);
    for (const s of this.subscribers) if (!s.res.destroyed) s.res.destroy(error);
    this.release();
  }

  /** The whole body, when the flight kept it whole; undefined otherwise. */
  body(): readonly Buffer[] | undefined {
    return this.sharing && !this.overflowed && this.base === 0 ? this.chunks : undefined;
  }

  /** Once it ended and every client has all it will get, the kept bytes go. */
  private maybeSettled(): void {
    if (!this.ended || [...this.subscribers].some((s) => !s.done && !s.res.destroyed)) return;
    this.release();
  }

  /** Lets go of the kept bytes. */
  release(): void {
    for (const c of this.chunks) this.tally.add(-c.length);
    this.base += this.chunks.length;
    this.chunks = [];
  }
}
