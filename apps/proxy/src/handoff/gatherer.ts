// Gathers what arrives within a short window (or until enough has), then hands it all to one
// call: the proxy's hand-off sends the images completed close together to Redis in one round
// trip instead of one each (enqueue.ts).

export interface GathererOptions<T> {
  /** longest an item waits for others; 0 still gathers what arrives in the same turn of the event loop */
  windowMs: number;
  /** a batch is sent at once when it holds this many items… */
  maxItems: number;
  /** …or this many bytes */
  maxBytes: number;
  sizeOf: (item: T) => number;
}

/** Each item's result, or the error that item met; `run` rejecting fails the whole batch. */
export type BatchRun<T, R> = (items: readonly T[]) => Promise<readonly (R | Error)[]>;

interface Waiting<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: Error) => void;
}

export class Gatherer<T, R> {
  private batch: Waiting<T, R>[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;

  constructor(
    private readonly run: BatchRun<T, R>,
    private readonly options: GathererOptions<T>,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.batch.push({ item, resolve, reject });
      this.bytes += this.options.sizeOf(item);
      if (this.batch.length >= this.options.maxItems || this.bytes >= this.options.maxBytes) this.flush();
      else if (this.batch.length === 1) this.schedule();
    });
  }

  /** Sends what is gathered now (the proxy is stopping, or a batch is full). */
  flush(): void {
    clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = this.immediate = undefined;
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.bytes = 0;
    let sent: Promise<readonly (R | Error)[]>;
    try {
      sent = this.run(batch.map((w) => w.item));
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(
      (results) => {
        batch.forEach((w, i) => {
          const result = results[i];
          if (result instanceof Error) w.reject(result);
          else if (result === undefined) w.reject(new Error('the batch returned no result for this item'));
          else w.resolve(result);
        });
      },
      (error: Error) => {
        for (const w of batch) w.reject(error);
      },
    );
  }

  private schedule(): void {
    if (this.options.windowMs > 0) {
      this.timer = setTimeout(() => this.flush(), this.options.windowMs);
    } else this.immediate = setImmediate(() => this.flush());
  }
}
