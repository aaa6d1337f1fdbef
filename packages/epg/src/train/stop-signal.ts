// SIGINT/SIGTERM stop a run at a step boundary, after a checkpoint. In a
// data-parallel run every rank must stop at the same step, so the ranks vote;
// the vote is a host round trip, so it is held at log steps only.
import { constants } from 'node:os';

import * as torch from '@epg/torch';
import type { dist } from '@epg/torch';

export type StopSignalName = 'SIGINT' | 'SIGTERM';

/** Listens for SIGINT and SIGTERM while a run trains (dispose to stop listening). */
export class StopSignal implements Disposable {
  #seen: StopSignalName | null = null;
  readonly #handlers: [StopSignalName, () => void][];

  constructor(private readonly group: dist.ProcessGroup | null) {
    this.#handlers = (['SIGINT', 'SIGTERM'] as const).map((sig) => [sig, () => (this.#seen = sig)]);
    for (const [sig, handler] of this.#handlers) process.on(sig, handler);
  }

  /**
   * The signal that stops the run after this step, or null. Alone: the one this
   * process saw. Data-parallel: only at vote steps (`vote`, the same on every
   * rank), a signal seen by any rank, on every rank; its number travels, so
   * SIGTERM wins over SIGINT.
   */
  poll(vote: boolean): StopSignalName | null {
    if (!this.group) return this.#seen;
    if (!vote) return null;
    const flag = torch.tensor([this.#seen ? constants.signals[this.#seen] : 0], { dtype: 'int32' });
    this.group.allReduce(flag, 'max');
    const agreed = flag.item();
    flag.dispose();
    if (agreed === constants.signals.SIGTERM) this.#seen = 'SIGTERM';
    else if (agreed === constants.signals.SIGINT) this.#seen ??= 'SIGINT';
    return this.#seen;
  }

  [Symbol.dispose](): void {
    for (const [sig, handler] of this.#handlers) process.off(sig, handler);
  }
}
