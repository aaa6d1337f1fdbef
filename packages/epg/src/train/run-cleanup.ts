// A run that cannot start leaves nothing behind: the run folder a training call
// created (with its config.json, and the log files opened before the first
// update) is removed when the call fails before its first update — a missing
// finetune.init, a dataset that cannot be read, a device that is not there, a
// first step that does not fit in memory. A resumed run's folder is never removed,
// nor one in which an update was made (its logs tell what happened).
import { rmSync } from 'node:fs';

/** What a training call has done so far, as far as cleaning up is concerned. */
export interface RunStart {
  /** The run folder this call created (rank 0 of a fresh run), else null. */
  createdDir: string | null;
  /** Whether an update was made. */
  updated: boolean;
}

/** Runs `fn`; if it throws before its first update, removes the run folder it created, then rethrows. */
export async function removingUnstartedRun<T>(fn: (start: RunStart) => Promise<T>): Promise<T> {
  const start: RunStart = { createdDir: null, updated: false };
  try {
    return await fn(start);
  } catch (e) {
    if (start.createdDir !== null && !start.updated) rmSync(start.createdDir, { recursive: true, force: true });
    throw e;
  }
}
