import { describe, expect, it } from 'vitest';
import { Gatherer } from './gatherer.js';

// The gatherer alone: what goes in one batch, and how each item learns its own result.

function recording(windowMs: number, maxItems = 10, maxBytes = 1_000) {
  const batches: string[][] = [];
  const gatherer = new Gatherer<string, string>(
    async (items) => {
      batches.push([...items]);
      return items.map((item) => (item.startsWith('bad') ? new Error(`no ${item}`) : item.toUpperCase()));
    },
    { windowMs, maxItems, maxBytes, sizeOf: (item) => item.length },
  );
  return { batches, gatherer };
}

describe('Gatherer', () => {
  it('sends what arrives within the window in one batch, and answers each item', async () => {
    const { batches, gatherer } = recording(20);
    const answers = await Promise.all(['a', 'b', 'c'].map((item) => gatherer.submit(item)));
    expect(answers).toEqual(['A', 'B', 'C']);
    expect(batches).toEqual([['a', 'b', 'c']]);
  });

  it('gathers what arrives in the same turn of the event loop when the window is 0', async () => {
    const { batches, gatherer } = recording(0);
    await Promise.all([gatherer.submit('a'), gatherer.submit('b')]);
    await gatherer.submit('c');
    expect(batches).toEqual([['a', 'b'], ['c']]);
  });

  it('sends a full batch at once, without waiting for the window', async () => {
    const { batches, gatherer } = recording(60_000, 2);
    const first = Promise.all([gatherer.submit('a'), gatherer.submit('b')]);
    await expect(first).resolves.toEqual(['A', 'B']);
    const late = gatherer.submit('c');
    expect(batches).toEqual([['a', 'b']]);
    gatherer.flush();
    await expect(late).resolves.toBe('C');
    expect(batches).toEqual([['a', 'b'], ['c']]);
  });

  it('sends a batch at once when it holds its bound in bytes', async () => {
    const { batches, gatherer } = recording(60_000, 100, 5);
    await Promise.all([gatherer.submit('abc'), gatherer.submit('de')]);
    expect(batches).toEqual([['abc', 'de']]);
  });

  it("fails only the item whose result is an error, and every item when the batch's call fails", async () => {
    const { gatherer } = recording(0);
    const [good, bad] = await Promise.allSettled([gatherer.submit('ok'), gatherer.submit('bad1')]);
    expect(good).toEqual({ status: 'fulfilled', value: 'OK' });
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: 'no bad1' } });

    const failing = new Gatherer<string, string>(
      async () => {
        throw new Error('connection closed');
      },
      { windowMs: 0, maxItems: 10, maxBytes: 100, sizeOf: () => 1 },
    );
    const settled = await Promise.allSettled([failing.submit('a'), failing.submit('b')]);
    expect(settled.map((s) => s.status === 'rejected' && (s.reason as Error).message)).toEqual(['connection closed', 'connection closed']);
  });
});
