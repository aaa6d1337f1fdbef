// Activation checkpointing (torch.utils.checkpoint): a checkpointed function
// runs its forward pass without storing activations, and runs again in the
// backward pass to rebuild them, trading compute (one more forward of each
// checkpointed part) for memory (only the tensors between parts are kept).
//
// PyTorch recomputes from inside the autograd engine (a custom Function, or
// saved-tensor hooks). Here the engine cannot call back into JavaScript (CUDA
// backward runs on the engine's device threads), so the recomputation is driven
// from TypeScript instead, segment by segment:
//
//   const tape = new CheckpointTape();
//   const loss = tape.record(() => lossOf(model, batch)); // model calls checkpoint(fn, ...inputs)
//   tape.backward(loss);                                   // instead of loss.backward()
//   tape.dispose();
//
// While recording, checkpoint(fn, ...xs) runs fn under no_grad and returns its
// outputs as fresh leaves that require grad (the cut). An input that is not
// such a leaf but needs a gradient (it comes from ordinary autograd code before
// the segment) is cut too: the tape keeps the original and hands fn a leaf, a
// "boundary". tape.backward(loss) then runs loss.backward(), which stops at the
// cuts, and walks the segments and boundaries in reverse order of creation: a
// segment reruns fn with gradients on its (leaf) inputs and backpropagates its
// outputs' accumulated gradients into them and into its parameters; a boundary
// backpropagates its leaf's gradient into the original graph. Reverse order
// means every leaf has all its gradient before it is passed on (each consumer
// was created after it). The ordinary graphs (the loss's, the boundaries') are
// retained until the tape is disposed, since they may share nodes: a tensor can
// feed a segment and also be used after it. Outside record(), or under no_grad, checkpoint(fn, ...)
// is simply fn(...).
//
// What is replayed exactly as in the forward pass: the default generator's
// state of the inputs' device (dropout draws the same mask) and the autocast
// state. fn must be otherwise pure: no in-place updates of state it reads
// (BatchNorm running statistics would update twice).
import { autocastGuard, autocastState, type AutocastDeviceType } from './autocast.js';
import { backward as autogradBackward, enableGrad, isGradEnabled, noGrad } from './autograd.js';
import type { Device } from './device.js';
import type { DType } from './dtype.js';
import { Generator } from './random.js';
import { keep } from './scope.js';
import type { Tensor } from './tensor.js';

type SegmentFn = (...inputs: Tensor[]) => Tensor | Tensor[];

interface Segment {
  kind: 'segment';
  fn: SegmentFn;
  /** The inputs fn ran on: leaves of this tape (gradients accumulate on them), or tensors that need none. */
  inputs: Tensor[];
  /** The leaves handed to the caller in place of fn's outputs. */
  outputs: Tensor[];
  /** Default generator state of the inputs' device before fn ran (null when not preserved). */
  rng: { device: Device; state: Uint8Array } | null;
  autocast: [AutocastDeviceType, { enabled: boolean; dtype: DType }][];
}

interface Boundary {
  kind: 'boundary';
  /** A handle on the original tensor, with its autograd history. */
  original: Tensor;
  leaf: Tensor;
}

let active: CheckpointTape | null = null;

export interface CheckpointTapeOptions {
  /** Replay each segment with the generator state it first ran with (default true; as PyTorch's preserve_rng_state). */
  preserveRngState?: boolean;
  /**
   * Keep the loss's graph (the ordinary autograd code after the last segment)
   * until the tape is disposed (default true): needed when a tensor feeds a
   * segment and is also used after the segments, so its upstream graph is
   * walked twice. false frees it during its backward pass (less memory while
   * the segments replay); such a reuse then fails with a message saying so.
   */
  retainLossGraph?: boolean;
}

export class CheckpointTape implements Disposable {
  readonly #items: (Segment | Boundary)[] = [];
  /** Boundary leaves by their original tensor object, so a tensor fed to many segments is cut once. */
  readonly #boundaryOf = new Map<Tensor, Tensor>();
  /** Every leaf this tape made (boundaries' and segments' outputs). */
  readonly #leaves = new Set<Tensor>();
  readonly #preserveRng: boolean;
  readonly #retainLossGraph: boolean;
  #state: 'new' | 'recording' | 'recorded' | 'done' = 'new';

  constructor(opts: CheckpointTapeOptions = {}) {
    this.#preserveRng = opts.preserveRngState ?? true;
    this.#retainLossGraph = opts.retainLossGraph ?? true;
  }

  /** Number of checkpointed segments recorded (for tests and logs). */
  get segments(): number {
    return this.#items.filter((i) => i.kind === 'segment').length;
  }

  /** Runs the forward pass fn with this tape receiving every checkpoint() call inside it. */
  record<T>(fn: () => T): T {
    if (this.#state !== 'new')
      throw new Error('CheckpointTape.record: a tape records one forward pass; make a new tape');
    const previous = active;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the recording tape is thread state, as grad mode is
    active = this;
    this.#state = 'recording';
    try {
      return fn();
    } finally {
      active = previous;
      this.#state = 'recorded';
    }
  }

  /** @internal checkpoint() while recording. */
  _segment(fn: SegmentFn, inputs: Tensor[]): Tensor | Tensor[] {
    const cut = inputs.map((x) => this.#cut(x));
    const device = cut.find((x) => x.device !== 'cpu')?.device ?? 'cpu';
    const rng = this.#preserveRng ? { device, state: Generator.default(device).getState() } : null;
    const out = noGrad(() => fn(...cut));
    const outs = Array.isArray(out) ? out : [out];
    const leaves = outs.map((o) => {
      const leaf = keep(o.isFloatingPoint ? o.requiresGrad_(true) : o);
      this.#leaves.add(leaf);
      return leaf;
    });
    const autocast = (['cpu', 'cuda'] as const).map((d): [AutocastDeviceType, { enabled: boolean; dtype: DType }] => [
      d,
      autocastState(d),
    ]);
    this.#items.push({ kind: 'segment', fn, inputs: cut, outputs: leaves, rng, autocast });
    return Array.isArray(out) ? leaves : leaves[0]!;
  }

  /** x as a segment input: a leaf of this tape, a boundary leaf cut from x's graph, or x (no gradient needed). */
  #cut(x: Tensor): Tensor {
    if (this.#leaves.has(x)) return x;
    const known = this.#boundaryOf.get(x);
    if (known) return known;
    if (!x.requiresGrad) {
      // No gradient flows back through x: keep a handle on its value for the replay.
      const value = keep(x.detach());
      this.#leaves.add(value);
      return value;
    }
    const original = keep(x.alias());
    const leaf = keep(x.detach().requiresGrad_(true));
    this.#leaves.add(leaf);
    this.#boundaryOf.set(x, leaf);
    this.#items.push({ kind: 'boundary', original, leaf });
    return leaf;
  }

  /**
   * loss.backward() through the recorded forward pass, replaying each segment.
   * gradient: as Tensor.backward's (for a non-scalar output).
   */
  backward(output: Tensor, gradient?: Tensor): void {
    if (this.#state !== 'recorded')
      throw new Error(
        this.#state === 'done'
          ? 'CheckpointTape.backward: already run (the replayed graphs are freed); record a new forward pass'
          : 'CheckpointTape.backward: record a forward pass first (tape.record(() => ...))',
      );
    this.#state = 'done';
    // The graphs before the cuts may share nodes (a tensor used after the segments and also
    // fed to one; one embedding feeding two boundaries): keep them until every part has run.
    // Only the ordinary autograd code between segments is retained this way, never a segment.
    autogradBackward([output], gradient ? [gradient] : undefined, { retainGraph: this.#retainLossGraph });
    for (let i = this.#items.length - 1; i >= 0; i--) {
      const item = this.#items[i]!;
      if (item.kind === 'boundary') {
        const g = item.leaf.grad;
        if (g) {
          try {
            autogradBackward([item.original], [g], { retainGraph: true });
          } catch (e) {
            if (!this.#retainLossGraph && /second time/.test(String(e)))
              throw new Error(
                'CheckpointTape: a tensor fed to a checkpointed segment is also used after the segments, so its ' +
                  'graph is needed twice; leave retainLossGraph on (the default) for this model',
                { cause: e },
              );
            throw e;
          } finally {
            g.dispose();
          }
        }
      } else {
        this.#replay(item);
      }
    }
  }

  #replay(seg: Segment): void {
    const grads = seg.outputs.map((o) => o.grad);
    try {
      const used = grads.flatMap((g, i) => (g ? [i] : []));
      if (used.length === 0) return; // nothing downstream needed this segment's outputs
      const guards = seg.autocast.map(([d, state]) => autocastGuard(d, state));
      let restore: (() => void) | null = null;
      if (seg.rng) {
        const gen = Generator.default(seg.rng.device);
        const now = gen.getState();
        gen.setState(seg.rng.state);
        restore = () => gen.setState(now);
      }
      let outs: Tensor[];
      try {
        const out = enableGrad(() => seg.fn(...seg.inputs));
        outs = Array.isArray(out) ? out : [out];
      } finally {
        restore?.();
        for (const g of guards.reverse()) g[Symbol.dispose]();
      }
      try {
        if (outs.length !== seg.outputs.length)
          throw new Error(
            `CheckpointTape: a segment returned ${outs.length} tensors on replay, ${seg.outputs.length} in the forward pass; ` +
              'a checkpointed function must be deterministic',
          );
        autogradBackward(
          used.map((i) => outs[i]!),
          used.map((i) => grads[i]!),
        );
      } finally {
        for (const o of outs) o.dispose();
      }
    } finally {
      for (const g of grads) g?.dispose();
    }
  }

  /** Frees every tensor the tape holds (leaves, boundary originals, their gradients). */
  dispose(): void {
    for (const item of this.#items) if (item.kind === 'boundary') item.original.dispose();
    for (const t of this.#leaves) t.dispose();
    this.#items.length = 0;
    this.#leaves.clear();
    this.#boundaryOf.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * fn(...inputs), checkpointed when a CheckpointTape is recording and gradients
 * are enabled: its activations are not stored but recomputed in
 * tape.backward(). Otherwise (no tape, no_grad, inference) it is fn(...inputs).
 * Pass every tensor fn reads that may need a gradient as an input (parameters
 * of modules fn calls are found by autograd on replay; other captured tensors
 * would get no gradient).
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor;
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor[], ...inputs: Tensor[]): Tensor[];
export function checkpoint(fn: SegmentFn, ...inputs: Tensor[]): Tensor | Tensor[] {
  if (active === null || !isGradEnabled()) return fn(...inputs);
  return active._segment(fn, inputs);
}

/** Whether a CheckpointTape is recording (checkpoint() calls would be recorded). */
export function isCheckpointing(): boolean {
  return active !== null && isGradEnabled();
}
