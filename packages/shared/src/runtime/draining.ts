import type { IncomingMessage, Server, ServerResponse } from 'node:http';

// Stopping an HTTP server under keep-alive load. `server.close()` closes the connections idle at
// that moment, once; a connection busy then goes on taking requests, and the process would wait
// for the deadline and cut what is in flight there. Once stopping, every response says
// `Connection: close`, and each connection closes as soon as its response has ended.

export interface Draining {
  /** the server is stopping: /readyz says so from the first moment */
  readonly stopping: boolean;
  /**
   * Stops accepting and ends every connection once its response is done; past `timeoutMs`,
   * cuts what is left. Resolves once every connection is closed.
   */
  close(timeoutMs: number): Promise<void>;
}

/** `closed`: called as each response ends (the proxy counts them there: one listener a response). */
export function draining(server: Server, closed?: (req: IncomingMessage, res: ServerResponse) => void): Draining {
  let stopping = false;
  /** responses not yet ended */
  const open = new Set<ServerResponse>();
  const ended = (req: IncomingMessage, res: ServerResponse) => {
    open.delete(res);
    closed?.(req, res);
    // its connection is idle now: closed, before a next request can take it
    if (stopping) setImmediate(() => server.closeIdleConnections());
  };
  // first of the request listeners, so that it runs before any answer is written
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    if (stopping) res.shouldKeepAlive = false;
    open.add(res);
    res.once('close', () => ended(req, res));
  });
  return {
    get stopping() {
      return stopping;
    },
    async close(timeoutMs) {
      stopping = true;
      // answers not started yet say `Connection: close`; those already started close after
      // their end (ended())
      for (const res of open) if (!res.headersSent) res.shouldKeepAlive = false;
      const shut = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
      try {
        await shut;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
