// The EPG networks and objectives against an independent PyTorch implementation
// (test/ref/epg_ref.py) with identical weights, inputs and noise, in float64:
// forward values, input and parameter gradients, to 1e-6 relative. The state
// dicts are loaded strictly in Python, which also checks the parameter names.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import {
  cmLoss,
  dmLoss,
  EPGViT,
  ntXent,
  pretrainLoss,
  RCMViT,
  sampleDmSigmas,
  sampleEctPairs,
  schedules,
} from '../src/index.js';
import { DEC, ENC } from './tiny-configs.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'epg_ref.py');
const { encodeTensor: enc, assertClose } = testing;

const dt = { dtype: 'float64' as const };
const RTOL = 1e-6;
const ATOL = 1e-9;

/** Gives every parameter random values (the zero-initialised head and adaLN would hide errors). */
function randomize(m: torch.nn.Module): void {
  torch.noGrad(() => {
    for (const p of m.parameters()) torch.tidy(() => p.copy_(torch.randnLike(p).mul(0.3)));
  });
}

function stateOf(m: torch.nn.Module): Record<string, ReturnType<typeof enc>> {
  return torch.tidy(() => Object.fromEntries([...m.stateDict()].map(([k, t]) => [k, enc(t)])));
}

function gradsOf(m: torch.nn.Module): Record<string, number[]> {
  return Object.fromEntries(m.namedParameters().map(([n, p]) => [n, p.grad ? enc(p.grad).data : []]));
}

interface Ref {
  error?: string;
  [k: string]: unknown;
}

function checkGrads(js: Record<string, number[]>, ref: Record<string, { data: number[] }>, what: string): void {
  assert.deepEqual(Object.keys(js).sort(), Object.keys(ref).sort(), `${what}: parameter names`);
  for (const [n, g] of Object.entries(js)) {
    if (g.length === 0) continue; // unused by this objective (e.g. the projector in L_rc only)
    assertClose(g, ref[n]!.data, RTOL, ATOL, `${what}: grad ${n}`);
  }
}

torch.manualSeed(11);
const cases: { name: string; payload: Record<string, unknown>; check: (ref: Ref) => void }[] = [];

// RCMViT forward and backward.
torch.tidy(() => {
  const m = new RCMViT(ENC, dt);
  randomize(m);
  const state = stateOf(m);
  const x = torch.randn([3, 2, 8, 8], dt).requiresGrad_(true);
  const t = torch.tensor([-100, 0, 250], { dtype: 'float32' });
  const { proj, rep } = m.forward(x, t);
  const gProj = torch.randnLike(proj);
  const gRep = torch.randnLike(rep);
  torch.backward([proj, rep], [gProj, gRep]);
  const js = { proj: enc(proj).data, rep: enc(rep).data, gx: enc(x.grad!).data, grads: gradsOf(m) };
  cases.push({
    name: 'RCMViT forward/backward (training-mode BatchNorm)',
    payload: { kind: 'rcm', config: ENC, state, x: enc(x), t: enc(t), gProj: enc(gProj), gRep: enc(gRep) },
    check: (ref) => {
      assertClose(js.proj, (ref.proj as { data: number[] }).data, RTOL, ATOL, 'projector output');
      assertClose(js.rep, (ref.rep as { data: number[] }).data, RTOL, ATOL, 'representation LN(CLS)');
      assertClose(js.gx, (ref.gx as { data: number[] }).data, RTOL, ATOL, 'input grad');
      checkGrads(js.grads, ref.grads as Record<string, { data: number[] }>, 'RCMViT');
    },
  });
  m.dispose();
});

// EPGViT forward and backward.
torch.tidy(() => {
  const m = new EPGViT(DEC, dt);
  randomize(m);
  const state = stateOf(m);
  const x = torch.randn([3, 2, 8, 8], dt).requiresGrad_(true);
  const t = torch.tensor([-300, 10, 1400], { dtype: 'float32' });
  const y = torch.tensor([0, 5, 3], { dtype: 'int64' });
  const out = m.forward(x, t, y);
  const g = torch.randnLike(out);
  out.backward(g);
  const js = { out: enc(out).data, gx: enc(x.grad!).data, grads: gradsOf(m), shape: out.shape };
  cases.push({
    name: 'EPGViT forward/backward (skips, adaLN, unpatchify, class embedding)',
    payload: { kind: 'epg', config: DEC, state, x: enc(x), t: enc(t), y: enc(y), g: enc(g) },
    check: (ref) => {
      assert.deepEqual(js.shape, [3, 2, 8, 8]);
      assertClose(js.out, (ref.out as { data: number[] }).data, RTOL, ATOL, 'output');
      assertClose(js.gx, (ref.gx as { data: number[] }).data, RTOL, ATOL, 'input grad');
      checkGrads(js.grads, ref.grads as Record<string, { data: number[] }>, 'EPGViT');
    },
  });
  m.dispose();
});

// EPGViT with time inputs that are not float32 numbers (t_in = 250·ln σ of
// arbitrary σ, as the objectives and samplers produce): a float64 model must
// compute its time embedding in float64 (in float32 it differs by ~4e-5).
torch.tidy(() => {
  const m = new EPGViT(DEC, dt);
  randomize(m);
  const state = stateOf(m);
  const x = torch.randn([3, 2, 8, 8], dt).requiresGrad_(true);
  const t = torch.tensor([250 * Math.log(0.0123456789), 250 * Math.log(1.2345678901), 250 * Math.log(311.111111)], dt);
  const y = torch.tensor([4, 0, 2], { dtype: 'int64' });
  const out = m.forward(x, t, y);
  const g = torch.randnLike(out);
  out.backward(g);
  const js = { out: enc(out).data, gx: enc(x.grad!).data, grads: gradsOf(m) };
  cases.push({
    name: 'EPGViT in float64 at time inputs that are not float32-exact',
    payload: { kind: 'epg', config: DEC, state, x: enc(x), t: enc(t), y: enc(y), g: enc(g) },
    check: (ref) => {
      assertClose(js.out, (ref.out as { data: number[] }).data, RTOL, ATOL, 'output');
      assertClose(js.gx, (ref.gx as { data: number[] }).data, RTOL, ATOL, 'input grad');
      checkGrads(js.grads, ref.grads as Record<string, { data: number[] }>, 'EPGViT (float64 t)');
    },
  });
  m.dispose();
});

// NT-Xent with more targets than features (gathered global batch, local block first).
torch.tidy(() => {
  const f = torch.randn([4, 6], dt).requiresGrad_(true);
  const tg = torch.randn([8, 6], dt);
  const l = ntXent(f, tg, 0.2);
  l.sum().backward();
  const js = { loss: enc(l).data, gf: enc(f.grad!).data };
  cases.push({
    name: 'ntXent against a gathered batch',
    payload: { kind: 'ntxent', f: enc(f), t: enc(tg), tau: 0.2 },
    check: (ref) => {
      assertClose(js.loss, (ref.loss as { data: number[] }).data, 1e-5, 1e-6, 'loss (float32 logsumexp)');
      assertClose(js.gf, (ref.gf as { data: number[] }).data, 1e-4, 1e-6, 'grad');
    },
  });
});

// Pre-training objective.
torch.tidy(() => {
  const online = new RCMViT(ENC, dt);
  const target = new RCMViT(ENC, dt);
  randomize(online);
  randomize(target);
  target.eval();
  const state = stateOf(online);
  const targetState = stateOf(target);
  const [x, xAug, xAug2, noise] = [0, 1, 2, 3].map(() => torch.randn([4, 2, 8, 8], dt)) as [
    Tensor,
    Tensor,
    Tensor,
    Tensor,
  ];
  const grid = schedules.gridOf(schedules.ictNumScales(1));
  const n = 17;
  const { loss, lCon, lRc } = pretrainLoss({ online, target, x, xAug, xAug2, noise, n, grid, tauRc: 0.1 });
  loss.mean().backward();
  const js = { loss: enc(loss).data, lCon: enc(lCon).data, lRc: enc(lRc).data, grads: gradsOf(online) };
  cases.push({
    name: 'pretrainLoss (contrastive + representation consistency)',
    payload: {
      kind: 'pretrain',
      config: ENC,
      state,
      targetState,
      x: enc(x),
      xAug: enc(xAug),
      xAug2: enc(xAug2),
      noise: enc(noise),
      grid: Array.from(grid),
      n,
      tauRc: 0.1,
    },
    check: (ref) => {
      assertClose(js.lCon, (ref.lCon as { data: number[] }).data, 1e-5, 1e-6, 'L_con');
      assertClose(js.lRc, (ref.lRc as { data: number[] }).data, 1e-5, 1e-6, 'L_rc');
      assertClose(js.loss, (ref.loss as { data: number[] }).data, 1e-5, 1e-6, 'loss');
      for (const [k, g] of Object.entries(js.grads))
        if (g.length)
          assertClose(g, (ref.grads as Record<string, { data: number[] }>)[k]!.data, 1e-4, 1e-7, `grad ${k}`);
    },
  });
  online.dispose();
  target.dispose();
});

// Diffusion objective.
torch.tidy(() => {
  const net = new EPGViT(DEC, dt);
  randomize(net);
  const state = stateOf(net);
  const x0 = torch.randn([4, 2, 8, 8], dt);
  const noise = torch.randn([4, 2, 8, 8], dt);
  const y = torch.tensor([1, 5, 0, 2], { dtype: 'int64' });
  const { sigma, weight } = sampleDmSigmas(4, schedules.gridOf(schedules.DM_GRID_SIZE), {
    generator: new torch.Generator('cpu', 5),
  });
  const loss = dmLoss({ net, x0, y, sigma, weight, noise });
  loss.mean().backward();
  const js = { loss: enc(loss).data, grads: gradsOf(net) };
  cases.push({
    name: 'dmLoss (x0 prediction, 1/Δσ weight)',
    payload: {
      kind: 'dm',
      config: DEC,
      state,
      x0: enc(x0),
      y: enc(y),
      noise: enc(noise),
      sigma: enc(sigma),
      weight: enc(weight),
    },
    check: (ref) => {
      assertClose(js.loss, (ref.loss as { data: number[] }).data, RTOL, ATOL, 'loss');
      checkGrads(js.grads, ref.grads as Record<string, { data: number[] }>, 'dm');
    },
  });
  net.dispose();
});

// Consistency objective with the auxiliary representation loss.
torch.tidy(() => {
  const net = new EPGViT(DEC, dt);
  const perc = new RCMViT({ ...ENC }, dt);
  randomize(net);
  randomize(perc);
  perc.eval();
  const state = stateOf(net);
  const percState = stateOf(perc);
  const x0 = torch.randn([4, 2, 8, 8], dt);
  const noise = torch.randn([4, 2, 8, 8], dt);
  const y = torch.tensor([1, 5, 0, 2], { dtype: 'int64' });
  const { t, r } = sampleEctPairs(4, 2, { generator: new torch.Generator('cpu', 9) });
  const { loss, lAux } = cmLoss({ net, x0, y, t, r, noise, c: 0.06, perceptual: perc });
  loss.mean().backward();
  const js = { loss: enc(loss).data, lAux: enc(lAux!).data, grads: gradsOf(net) };
  cases.push({
    name: 'cmLoss (pseudo-Huber, 1/(t−r), auxiliary NCE)',
    payload: {
      kind: 'cm',
      config: DEC,
      state,
      percConfig: ENC,
      percState,
      x0: enc(x0),
      y: enc(y),
      noise: enc(noise),
      t: enc(t),
      r: enc(r),
      c: 0.06,
    },
    check: (ref) => {
      assertClose(js.lAux, (ref.lAux as { data: number[] }).data, 1e-5, 1e-6, 'L_aux');
      assertClose(js.loss, (ref.loss as { data: number[] }).data, 1e-5, 1e-6, 'loss');
      for (const [k, g] of Object.entries(js.grads))
        if (g.length)
          assertClose(g, (ref.grads as Record<string, { data: number[] }>)[k]!.data, 1e-4, 1e-7, `grad ${k}`);
    },
  });
  net.dispose();
  perc.dispose();
});

const refs = testing.runPython(
  SCRIPT,
  cases.map((c) => c.payload),
) as Ref[];

cases.forEach((c, i) =>
  test(`epg vs PyTorch reference: ${c.name}`, () => {
    const ref = refs[i]!;
    assert.equal(ref.error, undefined, `reference raised: ${ref.error}`);
    c.check(ref);
  }),
);

test('epg models: no native tensors leak', () => {
  assert.equal(torch.liveTensors(), 0);
});
