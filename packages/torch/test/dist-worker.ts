// One rank of the distributed tests (dist.test.ts starts it with torchrun's
// environment). argv: scenario, output JSON path.
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import * as torch from '../src/index.js';
import { dist, nn, optim, type Tensor } from '../src/index.js';

const [scenario, outPath] = process.argv.slice(2) as [string, string];

/** The DDP scenario's model: Linear → BatchNorm1d → ReLU → Linear, float64. */
export function makeModel(seed: number): nn.Sequential {
  torch.manualSeed(seed);
  return new nn.Sequential(
    new nn.Linear(6, 16, { dtype: 'float64' }),
    new nn.BatchNorm1d(16, { dtype: 'float64' }),
    new nn.ReLU(),
    new nn.Linear(16, 1, { dtype: 'float64' }),
  );
}

/** The global batch of step k (every rank makes all of it and takes its rows). */
export function globalBatch(step: number, rows: number): { x: Tensor; y: Tensor } {
  const g = new torch.Generator('cpu', 1000 + step);
  return {
    x: torch.randn([rows, 6], { dtype: 'float64', generator: g }),
    y: torch.randn([rows, 1], { dtype: 'float64', generator: g }),
  };
}

export const DDP_STEPS = 5;
export const GLOBAL_ROWS = 8;

/** Trains DDP_STEPS steps; returns the final state dict as plain arrays. */
export function trainSteps(
  model: nn.Sequential,
  rows: [number, number],
  ddp: dist.DistributedDataParallel | null,
): Record<string, unknown> {
  const opt = new optim.AdamW(model.parameters(), { lr: 0.01, weightDecay: 0.01 });
  const losses: number[] = [];
  for (let step = 0; step < DDP_STEPS; step++) {
    torch.tidy(() => {
      ddp?.beginStep();
      const { x, y } = globalBatch(step, GLOBAL_ROWS);
      const xs = x.narrow(0, rows[0], rows[1]);
      const ys = y.narrow(0, rows[0], rows[1]);
      const out = (model.forward(xs) as Tensor).sub(ys);
      const loss = out.mul(out).mean();
      opt.zeroGrad();
      if (ddp) ddp.backward(loss);
      else loss.backward();
      opt.step();
      losses.push(loss.item());
    });
  }
  const state: Record<string, unknown> = { losses };
  for (const [k, v] of model.stateDict()) state[k] = v.toArray();
  return state;
}

function main(): Record<string, unknown> {
  if (scenario === 'rendezvous-alone') {
    dist.initProcessGroup(); // WORLD_SIZE=2 but only this rank runs: must time out
    return {};
  }
  const group = dist.initProcessGroup();
  const rank = group.rank;
  const world = group.size;
  const out: Record<string, unknown> = { rank, world };
  if (scenario === 'collectives') {
    const t = torch.tensor([rank + 1, 10 * (rank + 1)], { dtype: 'float64' });
    group.allReduce(t, 'sum');
    out.sum = t.toArray();
    const a = torch.tensor([rank + 1], { dtype: 'float32' });
    group.allReduce(a, 'avg');
    out.avg = a.toArray();
    const m = torch.tensor([rank * 3 - 1], { dtype: 'int64' });
    group.allReduce(m, 'max');
    out.max = m.toArray();
    out.gathered = group.allGather(torch.tensor([[rank, rank * 2]], { dtype: 'int32' })).toArray();
    const b = torch.tensor([rank === 1 ? 7 : 0, 0]);
    group.broadcast(b, 1);
    out.broadcast = b.toArray();
    const w = group.allReduceAsync(torch.ones([3]), 'sum');
    w.wait();
    group.barrier();
    // Differentiable collectives: loss_r = Σ c_r ⊙ f(x) over the gathered rows.
    const x = torch.tensor([[rank + 1, 2]], { dtype: 'float64', requiresGrad: true });
    const weights = torch
      .tensor(
        [
          [1, 2],
          [3, 4],
        ],
        { dtype: 'float64' },
      )
      .mul(rank + 1);
    group.allGatherWithGrad(x).mul(weights).sum().backward();
    out.gatherGrad = x.grad!.toArray();
    const z = torch.tensor([rank + 1, 1], { dtype: 'float64', requiresGrad: true });
    const s = group.allReduceWithGrad(z.mul(z));
    s.mul(torch.tensor([rank + 1, 0], { dtype: 'float64' }))
      .sum()
      .backward();
    out.reduceValue = s.toArray();
    out.reduceGrad = z.grad!.toArray();
  } else if (scenario === 'ddp' || scenario === 'ddp-small-buckets') {
    // Different seeds on purpose: DDP must start every rank from rank 0's weights.
    const model = makeModel(rank === 0 ? 7 : 99);
    nn.convertSyncBatchNorm(model, group);
    const per = GLOBAL_ROWS / world;
    const ddp = new dist.DistributedDataParallel(model, {
      bucketCapMB: scenario === 'ddp-small-buckets' ? 0.0001 : 25,
    });
    Object.assign(out, trainSteps(model, [rank * per, per], ddp));
    ddp.dispose();
  } else if (scenario === 'mismatch') {
    const model = new nn.Linear(4, rank === 0 ? 3 : 5);
    new dist.DistributedDataParallel(model);
  } else if (scenario === 'peer-dies') {
    const t = torch.ones([4]);
    group.allReduce(t);
    if (rank === 1) process.exit(3);
    const t0 = performance.now();
    try {
      for (let i = 0; i < 100; i++) group.allReduce(t);
      out.error = null;
    } catch (e) {
      out.error = (e as Error).message;
    }
    out.seconds = (performance.now() - t0) / 1000;
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && scenario === 'interruptible') {
  // As the trainer does: SIGINT ends the rank after its work is saved, with status 130.
  process.on('SIGINT', () => process.exit(130));
  setInterval(() => undefined, 1000);
  writeFileSync(outPath.replace('RANK', process.env.RANK ?? '0'), 'ready');
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = main();
  // One file per rank when several share a command line: RANK in the path becomes the rank.
  if (outPath) writeFileSync(outPath.replace('RANK', process.env.RANK ?? '0'), JSON.stringify(result));
  dist.destroyProcessGroup();
}
