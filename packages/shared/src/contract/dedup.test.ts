import { describe, expect, it } from 'vitest';
import { dedup, JOB_STATES, type JobState, storeMode } from './dedup.js';

describe('the dedup rule', () => {
  it.each([
    ['uploaded', false, { store: false, next: 'nothing', outcome: 'uploaded' }],
    ['uploaded', true, { store: false, next: 'nothing', outcome: 'uploaded' }],
    ['live', true, { store: false, next: 'nothing', outcome: 'already-queued' }],
    ['live', false, { store: true, next: 'nothing', outcome: 'refilled' }],
    ['failed', true, { store: true, next: 'retry', outcome: 'requeued' }],
    ['failed', false, { store: true, next: 'retry', outcome: 'requeued' }],
    ['completed', false, { store: true, next: 'retry', outcome: 'requeued' }],
    ['completed', true, { store: true, next: 'retry', outcome: 'requeued' }],
    ['none', false, { store: true, next: 'add', outcome: 'queued' }],
    ['none', true, { store: true, next: 'add', outcome: 'queued' }],
  ] as const)('job %s, bytes there: %s → %j', (state, present, expected) => {
    expect(dedup(state, present)).toEqual(expected);
  });

  it.each([
    ['uploaded', 'never'],
    ['live', 'if-absent'],
    ['failed', 'always'],
    ['completed', 'always'],
    ['none', 'always'],
  ] as const)('tells the scripts to store the bytes of a %s image: %s', (state, mode) => {
    expect(storeMode(state)).toBe(mode);
  });

  it('covers every state the scripts report', () => {
    const states: JobState[] = ['uploaded', 'live', 'failed', 'completed', 'none'];
    expect([...JOB_STATES].sort()).toEqual(states.sort());
  });
});
