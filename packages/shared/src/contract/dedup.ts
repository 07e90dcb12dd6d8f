// The one dedup rule: what a complete, cacheable response does, given what Redis knows of its
// image. The scripts only report the job state and store bytes as told (storeMode); the rule, and
// so every outcome, is here and in its table test.

/** What the queue knows of an image (commands/includes/jobState.lua). */
export type JobState = 'uploaded' | 'live' | 'failed' | 'completed' | 'none';
export const JOB_STATES: readonly JobState[] = ['uploaded', 'live', 'failed', 'completed', 'none'];

export type DedupOutcome =
  | 'uploaded' // uploaded recently: nothing to do
  | 'already-queued' // its job waits, runs or is delayed, and its bytes are there
  | 'refilled' // its job lives but its bytes were gone (expired, evicted): these bytes are stored for it
  | 'requeued' // its job had failed (or was kept completed): these bytes are stored and the job retried
  | 'queued'; // new: bytes stored and a job added

export interface DedupDecision {
  /** keep these bytes as the image's payload */
  store: boolean;
  /** then: add a job, retry the finished one, or nothing */
  next: 'add' | 'retry' | 'nothing';
  outcome: DedupOutcome;
}

export function dedup(state: JobState, bytesPresent: boolean): DedupDecision {
  switch (state) {
    case 'uploaded':
      return { store: false, next: 'nothing', outcome: 'uploaded' };
    case 'live':
      return bytesPresent ? { store: false, next: 'nothing', outcome: 'already-queued' } : { store: true, next: 'nothing', outcome: 'refilled' };
    case 'failed':
    case 'completed':
      return { store: true, next: 'retry', outcome: 'requeued' };
    case 'none':
      return { store: true, next: 'add', outcome: 'queued' };
  }
}

export type StoreMode = 'never' | 'if-absent' | 'always';

/** How a script must treat the bytes for `state`, derived from the rule. */
export function storeMode(state: JobState): StoreMode {
  const absent = dedup(state, false).store;
  const present = dedup(state, true).store;
  if (absent && present) return 'always';
  if (!absent && !present) return 'never';
  if (absent) return 'if-absent';
  throw new Error(`the dedup rule stores bytes for ${state} only when some are there already`);
}
