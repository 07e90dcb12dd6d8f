import { afterEach } from 'vitest';
import { type Stack, type StackOptions, startStack } from './stack.js';

// The stack of a test file whose tests start one each: `start` gives it the file's settings under
// the test's own; after each test it is stopped, and on a failure its last log lines, cache
// outcomes and S3 requests are printed first.

export interface UseStackOptions {
  /** the file's settings, under each test's own (`env` and `stub` merged key by key); read at each start */
  defaults?: StackOptions | (() => StackOptions);
  /** how many of the last log lines a failure prints (all of them: Infinity) */
  logLines?: number;
  /** the file's own cleanup after each test, before the stack stops (other proxies, services) */
  beforeStop?: () => Promise<unknown> | unknown;
}

export interface StackUse {
  /** starts the test's stack (stopped after the test) */
  start(options?: StackOptions): Promise<Stack>;
  /** stops the test's stack before the test ends (a Redis of the test's own is stopped after it) */
  stop(): Promise<void>;
}

export function useStack({ defaults, logLines = 30, beforeStop }: UseStackOptions = {}): StackUse {
  let stack: Stack | undefined;
  const stop = async () => {
    const s = stack;
    stack = undefined;
    await s?.stop();
  };
  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && stack) {
      console.log(
        'logs',
        JSON.stringify(stack.logs.slice(-logLines)),
        'outcomes',
        stack.outcomes.slice(-60),
        'S3',
        stack.tap.requests.map((r) => `${r.method} ${r.url} ${r.status}`),
      );
    }
    try {
      await beforeStop?.();
    } finally {
      await stop();
    }
  });
  return {
    async start(options = {}) {
      const base = typeof defaults === 'function' ? defaults() : (defaults ?? {});
      stack = await startStack({ ...base, ...options, env: { ...base.env, ...options.env }, stub: { ...base.stub, ...options.stub } });
      return stack;
    },
    stop,
  };
}
