import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { headerValue, requestedFormat } from '@imgproxy-cache/shared';
import type { CaptureTally } from '../handoff/capture.js';
import { Flight } from './flight.js';

// Concurrent GETs for the same image share one response (coalescing): the first leads a flight,
// the others join it, or, once the leader learns its response may not be shared, ask on their own.

/** A request to imgproxy that others may join, and the clients waiting to know whether they can. */
interface Coalesced {
  flight: Flight;
  /** joined before the response started; told then whether they share it */
  waiting: Set<(share: boolean) => void>;
}

/** Fetches a flight's response and starts it; `decided` says, once known, whether others may share it. */
export type Lead = (flight: Flight, decided: (share: boolean) => void) => Promise<void>;

/** Request headers that may change imgproxy's answer: requests differing in them are not merged. */
const VARYING = [
  'authorization',
  'if-none-match',
  'if-modified-since',
  'range',
  'dpr',
  'width',
  'viewport-width',
  'sec-ch-dpr',
  'sec-ch-width',
  'sec-ch-viewport-width',
  'save-data',
];

/** The coalescing key: the request target, and what of the request may change the answer. */
export function coalescingKey(target: string, path: string, headers: IncomingHttpHeaders): string {
  let key = target;
  // Accept picks the format only where the URL names none
  if (requestedFormat(path) === undefined) key += `\n${headerValue(headers.accept) ?? ''}`;
  for (const name of VARYING) {
    const value = headers[name];
    if (value !== undefined) key += `\n${name}:${headerValue(value)}`;
  }
  return key;
}

export class Flights {
  /** requests for the same image in progress, by coalescing key */
  private readonly byKey = new Map<string, Coalesced>();

  constructor(
    private readonly cacheMaxBytes: number,
    private readonly tally: CaptureTally,
  ) {}

  /** A flight of one client's own (not shared). */
  own(res: ServerResponse): Flight {
    const flight = new Flight(this.cacheMaxBytes, this.tally);
    flight.join(res);
    return flight;
  }

  /** clients waiting to share a response already requested (a gauge for tests and shutdown) */
  get waiting(): number {
    let n = 0;
    for (const c of this.byKey.values()) n += c.waiting.size;
    return n;
  }

  /**
   * A GET for the image `key` names: joins the flight in progress for it (`joined` is told), or
   * leads a new one that later requests may join; `lead` fetches the response.
   */
  coalesce(key: string, res: ServerResponse, lead: Lead, joined: () => void): Promise<void> {
    const shared = this.byKey.get(key);
    if (shared?.flight.joinable) return this.follow(shared, res, lead, joined);
    const flight = new Flight(this.cacheMaxBytes, this.tally);
    const coalesced: Coalesced = { flight, waiting: new Set() };
    this.byKey.set(key, coalesced);
    const forget = () => {
      if (this.byKey.get(key) === coalesced) this.byKey.delete(key);
    };
    flight.once('ended', forget).once('failed', forget).once('abandoned', forget);
    flight.join(res);
    return lead(flight, (share) => {
      if (!share) forget();
      for (const tell of coalesced.waiting) tell(share);
      coalesced.waiting.clear();
    });
  }

  /** Another client's flight for the same image: shared when it may be, else a request of its own. */
  private follow(shared: Coalesced, res: ServerResponse, lead: Lead, joined: () => void): Promise<void> {
    const join = () => {
      shared.flight.join(res);
      joined();
    };
    if (shared.flight.started) {
      join();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const release = shared.flight.hold();
      const tell = (share: boolean) => {
        res.off('close', left);
        // a response already let go (written whole, every client done) cannot be joined any more
        if (share && shared.flight.replayable) {
          join();
          resolve();
        } else {
          // not shareable (an error, a response for one client): its own request
          lead(this.own(res), () => undefined).then(resolve, reject);
        }
        release();
      };
      const left = () => {
        shared.waiting.delete(tell);
        release();
        resolve();
      };
      shared.waiting.add(tell);
      res.once('close', left);
    });
  }
}
