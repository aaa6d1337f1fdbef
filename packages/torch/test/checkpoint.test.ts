// Activation checkpointing: gradients through a CheckpointTape equal those of
// the same computation without it (float64, to the last bits that summation
// order can move), with dropout replayed from the same generator state, long
// skips, a conditioning tensor fed to every segment and used after them, inputs
// that need no gradient, multi-output segments; and the tape frees what it holds.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { F, nn, type Tensor } from '../src/index.js';
import { assertClose } from '../src/testing.js';

const live = (): number => torch.liveTensors();

/** A small U-shaped stack: encoder blocks whose outputs are long skips into decoder blocks conditioned on c. */
class Stack extends nn.Module {
  readonly enc: nn.ModuleList<nn.Linear>;
  readonly dec: nn.ModuleList<nn.Linear>;
  readonly embed: nn.Linear;
  readonly cond: nn.Linear;
  readonly head: nn.Linear;
  checkpointing = false;

  constructor(
    readonly width: number,
    depth: number,
    readonly drop: number,
  ) {
    super();
    const o = { dtype: 'float64' as const };
    this.embed = this.registerModule('embed', new nn.Linear(3, width, o));
    this.cond = this.registerModule('cond', new nn.Linear(2, width, o));
    this.enc = this.registerModule(
      'enc',
      new nn.ModuleList(Array.from({ length: depth }, () => new nn.Linear(width, width, o))),
    );
    this.dec = this.registerModule(
      'dec',
      new nn.ModuleList(Array.from({ length: depth }, () => new nn.Linear(2 * width, width, o))),
    );
    this.head = this.registerModule('head', new nn.Linear(width, 3, o));
  }

  #run<T extends Tensor | Tensor[]>(fn: (...xs: Tensor[]) => T, ...xs: Tensor[]): T {
    return (this.checkpointing ? torch.checkpoint(fn as (...xs: Tensor[]) => Tensor, ...xs) : fn(...xs)) as T;
  }

  forward(x: Tensor, z: Tensor, mask: Tensor): Tensor {
    return torch.tidy(() => {
      let h = this.embed.forward(x);
      const c = F.gelu(this.cond.forward(z));
      const skips: Tensor[] = [];
      for (const blk of this.enc) {
        // Two outputs: the block's output and a "skip" view of it; mask (no gradient) rides along.
        const [out, skip] = this.#run(
          (a, m) => {
            const y = F.dropout(F.gelu(blk.forward(a)), this.drop, this.training)
              .mul(m)
              .add(a);
            return [y, y.mul(0.5)];
          },
          h,
          mask,
        );
        h = out!;
        skips.push(skip!);
      }
      h = h.tanh(); // ordinary autograd between the two halves: a boundary the tape must cut in order
      for (const blk of this.dec) {
        h = this.#run(
          (a, cc, s) =>
            F.dropout(F.silu(blk.forward(torch.cat([a, s], -1))), this.drop, this.training)
              .add(a)
              .mul(cc),
          h,
          c,
          skips.pop()!,
        );
      }
      return this.head.forward(h.add(c)); // c used after the segments too
    });
  }
}

function gradients(model: Stack, x: Tensor, z: Tensor, mask: Tensor, checkpointing: boolean): Map<string, Tensor> {
  model.checkpointing = checkpointing;
  torch.manualSeed(7); // the same dropout masks in both runs
  for (const p of model.parameters()) p.grad = null;
  const xg = x.detach().requiresGrad_(true);
  const tape = checkpointing ? new torch.CheckpointTape() : null;
  try {
    torch.tidy(() => {
      const loss = tape
        ? tape.record(() => model.forward(xg, z, mask).square().sum())
        : model.forward(xg, z, mask).square().sum();
      if (tape) {
        assert.equal(tape.segments, 2 * model.enc.length);
        tape.backward(loss);
      } else loss.backward();
    });
  } finally {
    tape?.dispose();
  }
  const out = new Map<string, Tensor>([['input', torch.keep(xg.grad!)]]);
  for (const [n, p] of model.namedParameters()) out.set(n, torch.keep(p.grad!));
  xg.dispose();
  return out;
}

test('checkpointed gradients equal plain autograd (float64; dropout, long skips, shared conditioning)', () => {
  torch.manualSeed(0);
  const model = new Stack(16, 3, 0.2);
  const x = torch.randn([5, 4, 3], { dtype: 'float64' });
  const z = torch.randn([5, 1, 2], { dtype: 'float64' });
  const mask = torch.randn([5, 4, 16], { dtype: 'float64' }).gt(-1).to('float64');
  const plain = gradients(model, x, z, mask, false);
  const ckpt = gradients(model, x, z, mask, true);
  assert.deepEqual([...ckpt.keys()], [...plain.keys()]);
  for (const [name, g] of plain) {
    // Only the order in which the engine sums a tensor's gradient contributions differs.
    assertClose(ckpt.get(name)!.toTypedArray() as Float64Array, g.toTypedArray() as Float64Array, 1e-12, 1e-14, name);
    assert.ok(g.abs().sum().item() > 0, `${name} has a gradient`);
  }
  // Without replaying the generator state the dropout masks differ, and so do the gradients: the test can fail.
  model.checkpointing = true;
  torch.manualSeed(7);
  for (const p of model.parameters()) p.grad = null;
  const tape = new torch.CheckpointTape({ preserveRngState: false });
  torch.tidy(() => tape.backward(tape.record(() => model.forward(x, z, mask).square().sum())));
  tape.dispose();
  const w = model.enc.at(0).weight.grad!;
  assert.ok(
    w.sub(plain.get('enc.0.weight')!).abs().max().item() > 1e-6,
    'replaying other dropout masks changes the gradient',
  );
  w.dispose();
  for (const g of [...plain.values(), ...ckpt.values()]) g.dispose();
  model.dispose();
  for (const t of [x, z, mask]) t.dispose();
});

test('retainLossGraph: false frees the loss graph; a tensor reused after the segments then fails with the fix', () => {
  torch.manualSeed(2);
  const model = new Stack(8, 2, 0);
  model.checkpointing = true;
  const x = torch.randn([2, 4, 3], { dtype: 'float64' });
  const z = torch.randn([2, 1, 2], { dtype: 'float64' });
  const mask = torch.ones([2, 4, 8], { dtype: 'float64' });
  const tape = new torch.CheckpointTape({ retainLossGraph: false });
  // Stack uses c after its segments too: its graph is walked by the loss and by the boundary.
  const loss = tape.record(() => model.forward(x, z, mask).sum());
  assert.throws(() => tape.backward(loss), /also used after the segments.*retainLossGraph/);
  tape.dispose();
  loss.dispose();
  model.dispose();
  for (const t of [x, z, mask]) t.dispose();
});

test('outside record() or under no_grad, checkpoint(fn) is fn', () => {
  const x = torch.randn([3, 3]).requiresGrad_(true);
  torch.tidy(() => {
    const y = torch.checkpoint((a) => a.sin(), x);
    assert.notEqual(y.gradFn, null, 'an ordinary graph node without a tape');
    const tape = new torch.CheckpointTape();
    const z = tape.record(() => torch.noGrad(() => torch.checkpoint((a) => a.sin(), x)));
    assert.equal(tape.segments, 0);
    assert.equal(z.requiresGrad, false);
    tape.dispose();
  });
  x.dispose();
});

test('the tape frees everything it holds; misuse is refused with the fix', () => {
  torch.manualSeed(1);
  const model = new Stack(8, 2, 0);
  const x = torch.randn([2, 4, 3], { dtype: 'float64' });
  const z = torch.randn([2, 1, 2], { dtype: 'float64' });
  const mask = torch.ones([2, 4, 8], { dtype: 'float64' });
  model.checkpointing = true;
  const step = (): void => {
    const tape = new torch.CheckpointTape();
    torch.tidy(() => tape.backward(tape.record(() => model.forward(x, z, mask).sum())));
    tape.dispose();
    torch.noGrad(() => {
      for (const p of model.parameters()) p.grad = null;
    });
  };
  step();
  const before = live();
  for (let i = 0; i < 5; i++) step();
  assert.equal(live(), before, 'live tensors after five more checkpointed steps');

  const tape = new torch.CheckpointTape();
  const loss = tape.record(() => model.forward(x, z, mask).sum());
  assert.throws(() => tape.record(() => 0), /one forward pass/);
  tape.backward(loss);
  assert.throws(() => tape.backward(loss), /already run/);
  tape.dispose();
  loss.dispose();
  assert.throws(() => new torch.CheckpointTape().backward(x), /record a forward pass first/);
  model.dispose();
  for (const t of [x, z, mask]) t.dispose();
});
