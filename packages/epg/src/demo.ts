// The stand-in demo until the EPG pipeline lands: fit a two-layer MLP to
// y = sin(3x) with full-batch gradient descent written with @epg/torch
// operators, and report the loss before and after. It exercises creation,
// autograd, in-place updates and scoped memory end to end.
import * as torch from '@epg/torch';

export interface MlpDemoResult {
  initialLoss: number;
  finalLoss: number;
  steps: number;
  seconds: number;
  liveTensorsBefore: number;
  liveTensorsAfter: number;
}

export function fitMlpDemo(steps = 2000, log: (line: string) => void = console.log): MlpDemoResult {
  torch.manualSeed(0);
  const liveTensorsBefore = torch.liveTensors();
  const hidden = 64;
  const [x, y] = torch.tidy(() => {
    const x = torch.linspace(-1, 1, 256).unsqueeze(1);
    return [x, x.mul(3).sin()];
  });
  const params = [
    torch.randn([hidden, 1]).mul_(1.0).requiresGrad_(),
    torch.zeros([hidden]).requiresGrad_(),
    torch
      .randn([1, hidden])
      .mul_(1 / Math.sqrt(hidden))
      .requiresGrad_(),
    torch.zeros([1]).requiresGrad_(),
  ] as const;
  const [w1, b1, w2, b2] = params;
  const lr = 0.1;
  const t0 = performance.now();
  let initialLoss = NaN;
  let finalLoss = NaN;
  for (let step = 0; step <= steps; step++) {
    const loss = torch.tidy(() => {
      const h = torch.F.linear(x, w1, b1).tanh();
      const pred = torch.F.linear(h, w2, b2);
      const l = pred.sub(y).square().mean();
      l.backward();
      torch.noGrad(() => {
        for (const p of params) {
          const g = p.grad!;
          p.sub_(g, lr);
          g.zero_();
        }
      });
      return l.item();
    });
    if (step === 0) initialLoss = loss;
    finalLoss = loss;
    if (step % 500 === 0) log(`step ${String(step).padStart(5)}  mse ${loss.toExponential(3)}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  for (const t of [x, y, ...params]) t.dispose();
  return { initialLoss, finalLoss, steps, seconds, liveTensorsBefore, liveTensorsAfter: torch.liveTensors() };
}
