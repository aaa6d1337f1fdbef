// End-to-end training: each stage runs, checkpoints, and resumes with the same
// losses step for step as an uninterrupted run (CPU, bit for bit); fine-tuning
// starts from a pre-training checkpoint (projector dropped); errors name the
// key, file or path and what to do; SIGINT saves a checkpoint.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import type { dist } from '@epg/torch';

import { edm } from '../src/index.js';
import { loadNpz } from '../src/eval/npz.js';
import { sampleFromCheckpoint, sampleLabels } from '../src/sample.js';
import { ConfigError, loadConfig, type TrainConfig } from '../src/train/config.js';
import { readCheckpointMeta } from '../src/train/checkpoint.js';
import { createDataPipeline } from '../src/train/data.js';
import { StopSignal } from '../src/train/stop-signal.js';
import { train } from '../src/train/trainer.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'src', 'cli.js');
const root = mkdtempSync(join(tmpdir(), 'epg-train-'));
after(() => rmSync(root, { recursive: true, force: true }));

const tiny = (stage: string, extra: string[] = []): TrainConfig =>
  loadConfig(`fashion-mnist-${stage}`, [
    `runDir=${root}`,
    'batchSize=8',
    'steps=4',
    'logEvery=1',
    'checkpointEvery=0',
    'optim.warmupSteps=1',
    'sampleCount=0',
    ...extra,
  ]);

async function losses(
  cfg: TrainConfig,
  resume?: string,
  stopAfter?: number,
): Promise<{ losses: number[]; runDir: string; lines: string[] }> {
  const lines: string[] = [];
  const r = await train(cfg, {
    data: createDataPipeline,
    log: (l) => lines.push(l),
    lossEveryStep: true,
    ...(resume ? { resume } : {}),
    ...(stopAfter !== undefined ? { stopAfter } : {}),
  });
  return { losses: [...r.losses.entries()].sort((a, b) => a[0] - b[0]).map(([, l]) => l), runDir: r.runDir, lines };
}

let pretrainRun = '';

for (const stage of ['pretrain', 'dm', 'cm'] as const) {
  test(`train ${stage}: checkpoint then resume gives the same losses as an uninterrupted run`, async () => {
    const extra = stage === 'pretrain' ? [] : [`finetune.init=${pretrainRun}`];
    const full = await losses(tiny(stage, extra));
    if (stage === 'pretrain') pretrainRun = full.runDir;
    const first = await losses(tiny(stage, extra), undefined, 2);
    assert.equal(first.losses.length, 2);
    const rest = await losses(tiny(stage, extra), first.runDir);
    assert.deepEqual([...first.losses, ...rest.losses], full.losses, 'bit-identical losses after resuming');
    assert.ok(full.losses.every(Number.isFinite));
    const { meta } = readCheckpointMeta(full.runDir);
    assert.equal(meta.step, 4);
    assert.equal(meta.stage, stage);
    assert.ok(existsSync(join(full.runDir, 'config.json')) && existsSync(join(full.runDir, 'stats.jsonl')));
    assert.ok(
      readdirSync(full.runDir).some((f) => f.startsWith('events.out.tfevents.')),
      'TensorBoard events',
    );
    assert.equal(torch.liveTensors(), 0, 'no native tensors left after training');
  });
}

test('cudaGraph=on: the graphed step (static buffers, capture checks, tensor lr) gives the eager losses', async () => {
  // On the CPU the graphed path runs eagerly with the capture checks on: a host
  // transfer anywhere in the dm/cm step would throw here. The keys change with
  // the clipping state (after warm-up) and the ECT stage (every 2 steps).
  for (const stage of ['dm', 'cm'] as const) {
    const extra = [`finetune.init=${pretrainRun}`, 'steps=6', 'finetune.cmStageSteps=2', 'optim.gradClip=0.5'];
    const eager = await losses(tiny(stage, extra));
    const { losses: graphed, lines, runDir } = await losses(tiny(stage, [...extra, 'cudaGraph=on']));
    // Not bit for bit: the capturable lr is a float32 tensor (as in PyTorch), the eager one a double.
    assert.equal(graphed.length, eager.losses.length);
    graphed.forEach((l, i) =>
      assert.ok(Math.abs(l - eager.losses[i]!) <= 1e-5 * Math.abs(l), `${stage} step ${i}: ${l} vs ${eager.losses[i]}`),
    );
    assert.ok(
      lines.some((l) => /cudaGraph on cpu: the step runs eagerly through static buffers/.test(l)),
      lines.join('\n'),
    );
    const cfg = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')) as TrainConfig;
    assert.equal(cfg.cudaGraph, 'on');
  }
  // Pre-training draws its noise level on the host each step: it says so and trains eagerly.
  const lines: string[] = [];
  await train(tiny('pretrain', ['cudaGraph=on', 'steps=1']), { data: createDataPipeline, log: (l) => lines.push(l) });
  assert.ok(
    lines.some((l) =>
      /cudaGraph on, but the step runs eagerly: the pre-training step chooses its noise level and temperatures on the host/.test(
        l,
      ),
    ),
    lines.join('\n'),
  );
  // So does consistency tuning with decoder dropout (its passes share masks through the generator state).
  lines.length = 0;
  await train(tiny('cm', [`finetune.init=${pretrainRun}`, 'cudaGraph=on', 'steps=1', 'finetune.drop=0.5']), {
    data: createDataPipeline,
    log: (l) => lines.push(l),
  });
  assert.ok(
    lines.some((l) => /runs eagerly: with decoder dropout \(finetune.drop > 0\)/.test(l)),
    lines.join('\n'),
  );
  assert.throws(() => tiny('dm', ['cudaGraph=yes']), /cudaGraph.*off.*on/);
  assert.equal(torch.liveTensors(), 0, 'no native tensors left after graphed training');
});

test('sample from a DM checkpoint: PNGs, grid and an ADM .npz; NFE reported', () => {
  const dmRun = readdirSync(root)
    .filter((d) => d.includes('-dm-'))
    .map((d) => join(root, d))[0]!;
  const out = join(root, 'samples');
  const r = sampleFromCheckpoint({
    checkpoint: dmRun,
    out,
    num: 3,
    steps: 4,
    sampler: 'heun',
    cfgScale: 2,
    labels: 'balanced',
  });
  // 3 Heun steps of 2 evaluations; an evaluation inside the guidance interval costs 2.
  const sig = edm.samplingSigmas(4, 28);
  const shift = edm.resolutionShift(28);
  const evals = [0, 1, 2].flatMap((i) => [sig[i]!, sig[i + 1]!]);
  const guided = evals.filter((s) => s > 0.19 * shift && s <= 1.61 * shift).length;
  assert.equal(r.nfePerImage, evals.length + guided);
  assert.ok(
    existsSync(join(out, 'grid.png')) && existsSync(join(out, 'samples.npz')) && existsSync(join(out, '000002.png')),
  );
  assert.equal(torch.liveTensors(), 0);
});

test(
  'GPU: cudaGraph=on captures the dm and cm steps on CUDA (bf16) and trains',
  { skip: torch.cuda.isAvailable() ? false : 'no CUDA device' },
  async () => {
    for (const stage of ['dm', 'cm'] as const) {
      const extra = [
        `finetune.init=${pretrainRun}`,
        'steps=8',
        'device=cuda',
        'precision=bf16',
        'optim.gradClip=0.5',
        'finetune.cmStageSteps=4',
      ];
      const eager = await losses(tiny(stage, extra));
      const { losses: graphed, lines } = await losses(tiny(stage, [...extra, 'cudaGraph=on']));
      assert.ok(
        lines.some((l) => new RegExp(`cudaGraph: captured the ${stage} step`).test(l)),
        lines.join('\n'),
      );
      assert.ok(!lines.some((l) => /capture failed/.test(l)), lines.join('\n'));
      assert.equal(graphed.length, 8);
      // The replayed steps draw other noise than the eager ones (graph-safe RNG offsets): compare scales.
      const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
      assert.ok(graphed.every(Number.isFinite), String(graphed));
      // A replay that did nothing would repeat one loss (the noise and the weights would not move).
      assert.ok(new Set(graphed.slice(2)).size === graphed.length - 2, `replays give new losses: ${graphed}`);
      assert.ok(
        mean(graphed) < 3 * mean(eager.losses) && mean(eager.losses) < 3 * mean(graphed),
        `${graphed} vs ${eager.losses}`,
      );
    }
    assert.equal(torch.liveTensors(), 0);
  },
);

test('balanced labels cycle through the classes: counts differ by at most one, a grid row holds every class', () => {
  const gen = new torch.Generator('cpu', 0);
  try {
    torch.tidy(() => {
      const labels = sampleLabels(25, 10, 'balanced', gen).toArray() as number[];
      assert.deepEqual(labels.slice(0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const counts = Array.from({ length: 10 }, (_, k) => labels.filter((l) => l === k).length);
      assert.deepEqual(counts, [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
      assert.deepEqual(sampleLabels(3, 10, 7, gen).toArray(), [7, 7, 7]);
    });
  } finally {
    gen.dispose();
  }
});

test('sample --cuda-graph: the graphed sampler (heun with CFG, one-step; a padded last batch) gives the eager samples', () => {
  // On the CPU the graphed sampler runs eagerly with the capture checks: a host
  // copy inside the sampler would throw here.
  const runs = readdirSync(root).map((d) => join(root, d));
  const cases = [
    { run: runs.find((d) => d.includes('-dm-'))!, sampler: 'heun' as const, cfgScale: 2 },
    { run: runs.find((d) => d.includes('-cm-'))!, sampler: 'onestep' as const, cfgScale: 1 },
  ];
  for (const c of cases) {
    const draw = (cudaGraph: boolean): Uint8Array => {
      const lines: string[] = [];
      const r = sampleFromCheckpoint({
        checkpoint: c.run,
        out: join(root, `samples-graph-${c.sampler}-${cudaGraph}`),
        num: 7,
        batchSize: 3,
        steps: 4,
        sampler: c.sampler,
        cfgScale: c.cfgScale,
        labels: 'balanced',
        writePngs: false,
        cudaGraph,
        log: (l) => lines.push(l),
      });
      if (cudaGraph)
        assert.ok(lines.some((l) => /cudaGraph: the .* sampler runs eagerly: its inputs are on cpu/.test(l)));
      const t = loadNpz(r.npz)['arr_0']!;
      try {
        return t.toTypedArray() as Uint8Array;
      } finally {
        t.dispose();
      }
    };
    const eager = draw(false);
    const graphed = draw(true);
    assert.equal(graphed.length, eager.length);
    // The padded last batch may round a pixel differently (other matmul blocking): at most 1 level.
    let worst = 0;
    for (let i = 0; i < eager.length; i++) worst = Math.max(worst, Math.abs(graphed[i]! - eager[i]!));
    assert.ok(worst <= 1, `${c.sampler}: samples differ by up to ${worst} levels`);
  }
  assert.equal(torch.liveTensors(), 0);
});

test('consistency tuning from a diffusion checkpoint (ECT) starts from its EMA weights', async () => {
  const dmRun = readdirSync(root)
    .filter((d) => d.includes('-dm-'))
    .map((d) => join(root, d))[0]!;
  const lines: string[] = [];
  const ect = await train(tiny('cm', [`finetune.init=${dmRun}`, `finetune.perceptual=${pretrainRun}`, 'steps=1']), {
    data: createDataPipeline,
    log: (l) => lines.push(l),
  });
  assert.ok(
    lines.some((l) => /initialised the whole model from the diffusion checkpoint .*\(its EMA weights\)/.test(l)),
    lines.join('\n'),
  );
  // finetune.cmPrecond 'auto' reads the network as the diffusion model's x̂₀, and the run records it for samplers.
  const precondOf = (runDir: string): unknown =>
    (JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')) as TrainConfig).finetune.cmPrecond;
  assert.equal(precondOf(ect.runDir), 'x0');
  assert.equal(readCheckpointMeta(ect.runDir).meta.config.finetune.cmPrecond, 'x0');
  const fromEncoder = await train(tiny('cm', [`finetune.init=${pretrainRun}`, 'steps=1']), {
    data: createDataPipeline,
    log: () => undefined,
  });
  assert.equal(precondOf(fromEncoder.runDir), 'edm', 'from an encoder: the released form (spec §6.2)');
  // The sampler applies the run's form: 'x0' and 'edm' draw different one-step samples from the same weights.
  const draw = (precond: string): Uint8Array => {
    const ck = join(root, `ect-${precond}.safetensors`);
    const { path, meta } = readCheckpointMeta(ect.runDir);
    const tensors = torch.io.loadSafetensors(path);
    try {
      const config = { ...meta.config, finetune: { ...meta.config.finetune, cmPrecond: precond } };
      torch.io.saveSafetensors(ck, tensors, { epg: JSON.stringify({ ...meta, config }) });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
    const r = sampleFromCheckpoint({ checkpoint: ck, out: join(root, `ect-${precond}`), num: 4, writePngs: false });
    const t = loadNpz(r.npz)['arr_0']!;
    try {
      return t.toTypedArray() as Uint8Array;
    } finally {
      t.dispose();
    }
  };
  assert.notDeepEqual(draw('x0'), draw('edm'));
  // A run written before the key existed resumes, and samples, in the released form.
  const { path: ectCk, meta: ectMeta } = readCheckpointMeta(ect.runDir);
  const old = torch.io.loadSafetensors(ectCk);
  try {
    const { cmPrecond: _dropped, ...finetune } = ectMeta.config.finetune;
    torch.io.saveSafetensors(ectCk, old, {
      epg: JSON.stringify({ ...ectMeta, config: { ...ectMeta.config, finetune } }),
    });
  } finally {
    for (const t of old.values()) t.dispose();
  }
  await train(tiny('cm', ['steps=2']), { data: createDataPipeline, log: () => undefined, resume: ect.runDir });
  assert.equal(precondOf(ect.runDir), 'edm');
  assert.ok(!lines.some((l) => /without the auxiliary representation loss/.test(l)), 'L_aux uses finetune.perceptual');
  // Without a perceptual encoder the diffusion init runs without L_aux, and says so.
  const quiet: string[] = [];
  await train(tiny('cm', [`finetune.init=${dmRun}`, 'steps=1']), {
    data: createDataPipeline,
    log: (l) => quiet.push(l),
  });
  assert.ok(quiet.some((l) => /without the auxiliary representation loss/.test(l)));
  // A DM cannot start from a DM checkpoint; the perceptual encoder must be a pre-training one.
  await assert.rejects(
    train(tiny('dm', [`finetune.init=${dmRun}`]), { data: createDataPipeline, log: () => undefined }),
    /finetune.init must be a pre-training checkpoint; .* is a 'dm' checkpoint/,
  );
  await assert.rejects(
    train(tiny('cm', [`finetune.init=${dmRun}`, `finetune.perceptual=${dmRun}`]), {
      data: createDataPipeline,
      log: () => undefined,
    }),
    /finetune.perceptual must be a pre-training checkpoint/,
  );
  assert.equal(torch.liveTensors(), 0);
});

test('config errors name the key and list valid keys; bad values are rejected', () => {
  assert.throws(
    () => loadConfig('fashion-mnist-dm', ['optim.lrr=1']),
    (e: Error) =>
      e instanceof ConfigError && /unknown config key 'optim.lrr'/.test(e.message) && /optim\.lr\b/.test(e.message),
  );
  assert.throws(() => loadConfig('fashion-mnist-dm', ['batchSize=many']), /config key 'batchSize': expected a number/);
  assert.throws(() => loadConfig('fashion-mnist-dm', ['precision=fp8']), /expected one of fp32, bf16, fp16/);
  assert.throws(() => loadConfig('no-such-config'), /neither a file nor a shipped preset/);
  const bad = join(root, 'bad.json');
  writeFileSync(bad, '{ "steps": 3, ');
  assert.throws(() => loadConfig(bad), /invalid JSON/);
  writeFileSync(bad, JSON.stringify({ data: { sourse: 'x' } }));
  assert.throws(() => loadConfig(bad), /unknown config key 'data.sourse'/);
});

test('errors: missing dataset, checkpoint of another preset, corrupt checkpoint', async () => {
  await assert.rejects(
    train(tiny('dm', ['data.source=/nonexistent/images']), { data: createDataPipeline, log: () => undefined }),
    /does not exist/,
  );
  await assert.rejects(
    train(tiny('dm', [`finetune.init=${pretrainRun}`, 'preset=EPG-S/4']), {
      data: createDataPipeline,
      log: () => undefined,
    }),
    /trained with preset EPG-T\/4, this run uses EPG-S\/4/,
  );
  const corrupt = join(root, 'corrupt.safetensors');
  writeFileSync(corrupt, Buffer.from('not a checkpoint at all'));
  await assert.rejects(
    train(tiny('dm', [`finetune.init=${corrupt}`]), { data: createDataPipeline, log: () => undefined }),
    /corrupt\.safetensors/,
  );
  const emptyDir = mkdtempSync(join(root, 'empty-'));
  assert.throws(() => readCheckpointMeta(emptyDir), /no checkpoint in/);
  assert.equal(torch.liveTensors(), 0);
});

test('SIGINT saves a checkpoint at the next step boundary, exits with 130 and says how to resume', async () => {
  const runDir = join(root, 'sigint');
  const args = [
    'pretrain',
    '--config',
    'fashion-mnist-pretrain',
    '--set',
    `runDir=${runDir}`,
    '--set',
    'batchSize=8',
    '--set',
    'steps=100000',
    '--set',
    'logEvery=1',
    '--set',
    'checkpointEvery=0',
  ];
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    // The first progress line (non-TTY: printed every 10 s) means training is under way.
    if (/ \d+\/100000/.test(err) && !child.killed) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  // Stopped by SIGINT after saving: the shell's status for it, not success.
  assert.equal(code, 130, err.slice(-500));
  const run = join(runDir, readdirSync(runDir)[0]!);
  const { meta } = readCheckpointMeta(run);
  assert.ok(meta.step >= 1 && meta.step < 100000, `checkpoint at step ${meta.step}`);
  assert.ok(JSON.parse(readFileSync(join(run, 'latest.json'), 'utf8')).step === meta.step);
  assert.match(out, new RegExp(`stopped by SIGINT at step ${meta.step} of 100000`));
  // The same command line with --resume: run length and logging come from it, not from the checkpoint.
  assert.ok(out.includes(`continue with: epg pretrain ${args.slice(1).join(' ')} --resume ${run}`), out);
});

test('StopSignal: alone, a signal stops at the next step; data-parallel, the ranks vote at log steps only', () => {
  const alone = new StopSignal(null);
  assert.equal(alone.poll(false), null);
  process.emit('SIGINT');
  assert.equal(alone.poll(false), 'SIGINT', 'one process needs no vote');
  alone[Symbol.dispose]();
  // Rank 0 of two whose peer saw SIGTERM: the all-reduce (max) counts the votes, a host round trip each.
  let votes = 0;
  let peer = 0;
  const group = {
    allReduce: (t: torch.Tensor, op: string) => {
      assert.equal(op, 'max');
      votes++;
      t.fill_(Math.max(t.item(), peer));
    },
  } as unknown as dist.ProcessGroup;
  const ranked = new StopSignal(group);
  const listeners = process.listenerCount('SIGTERM');
  assert.equal(ranked.poll(true), null);
  process.emit('SIGINT');
  peer = constants.signals.SIGTERM;
  assert.equal(ranked.poll(false), null, 'no stop between votes: every rank must stop at the same step');
  assert.equal(votes, 1, 'no round trip between log steps');
  assert.equal(ranked.poll(true), 'SIGTERM', "the peer's SIGTERM wins over this rank's SIGINT");
  assert.equal(votes, 2);
  ranked[Symbol.dispose]();
  assert.equal(process.listenerCount('SIGTERM'), listeners - 1, 'the handlers are removed');
});
