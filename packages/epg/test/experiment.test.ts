// The experiment runner end to end on a tiny experiment (Fashion-MNIST, EPG-T/4,
// a few steps, 8 samples per evaluation): every arm × seed × step is trained and
// evaluated once, init arms feed fine-tuning arms with their compute counted,
// a rerun does nothing, and a run stopped between evaluations continues where it
// stopped. Experiment files are checked key by key.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import {
  loadExperiment,
  resolveExperimentFile,
  runExperiment,
  summarise,
  type ExperimentSpec,
  type ExperimentState,
} from '../src/experiment.js';
import { trainingFlopsPerImage } from '../src/models/flops.js';

const root = mkdtempSync(join(tmpdir(), 'epg-experiment-'));
after(() => rmSync(root, { recursive: true, force: true }));
process.env['EPG_CACHE'] = join(root, 'cache');

const TINY = ['batchSize=8', 'logEvery=1', 'checkpointEvery=0', 'optim.warmupSteps=1', 'sampleCount=0'];
const spec: ExperimentSpec = {
  name: 'tiny',
  description: 'A smoke test of the runner.',
  dataset: 'fashion-mnist',
  seeds: [0, 1],
  set: TINY,
  eval: { num: 8, refImages: 24 },
  arms: [
    { name: 'pre', config: 'fashion-mnist-pretrain', set: ['steps=3'] },
    {
      name: 'dm',
      label: 'dm from pre',
      config: 'fashion-mnist-dm',
      set: ['steps=4'],
      init: 'pre',
      evalAt: [2, 4],
      sample: { sampler: 'euler', steps: 2, cfg: 1 },
    },
    { name: 'dm-scratch', config: 'fashion-mnist-dm', set: ['steps=4'], sample: { sampler: 'onestep' } },
    // ECT's route: its compute counts the whole chain (the dm run and the pre-training behind it).
    { name: 'ect', config: 'fashion-mnist-cm', set: ['steps=2'], init: 'dm', sample: { sampler: 'onestep' } },
  ],
};

function write(name: string, content: unknown): string {
  const p = join(root, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

describe('runExperiment', () => {
  const file = write('tiny.json', spec);
  const out = join(root, 'out');
  let first: ExperimentState;

  test('trains and evaluates every arm × seed × step, counts the init run, writes the report', async () => {
    const lines: string[] = [];
    first = await runExperiment({ file, out, log: (l) => lines.push(l) });
    const keys = first.evaluations.map((e) => `${e.arm}-s${e.seed}@${e.step}`).sort();
    assert.deepEqual(keys, [
      'dm-s0@2',
      'dm-s0@4',
      'dm-s1@2',
      'dm-s1@4',
      'dm-scratch-s0@4',
      'dm-scratch-s1@4',
      'ect-s0@2',
      'ect-s1@2',
    ]);
    assert.ok(first.floor && Number.isFinite(first.floor.fid));
    for (const e of first.evaluations) assert.ok(Number.isFinite(e.fid) && e.fid > 0, `${e.arm}: FID ${e.fid}`);
    // The dm arm counts the pre-training's 3 steps × 8 images; the scratch arm only its own.
    const at = (arm: string, seed: number, step: number) =>
      first.evaluations.find((e) => e.arm === arm && e.seed === seed && e.step === step)!;
    assert.equal(at('dm', 0, 2).images, 2 * 8 + 3 * 8);
    assert.equal(at('dm', 0, 4).images, 4 * 8 + 3 * 8);
    assert.equal(at('dm-scratch', 1, 4).images, 4 * 8);
    assert.equal(at('ect', 0, 2).images, 2 * 8 + 4 * 8 + 3 * 8, 'the whole init chain');
    assert.ok(at('dm', 0, 4).seconds > at('dm', 0, 2).seconds);
    // Seeds train separately (different losses, so different samples and FIDs).
    assert.notEqual(at('dm', 0, 4).fid, at('dm', 1, 4).fid);
    // The dm run was trained in two pieces (0 → 2, then resumed 2 → 4), in one run folder.
    assert.ok(
      lines.some((l) => /resuming dm from .* at step 2/.test(l)),
      'the second piece resumes the first',
    );
    assert.equal(readdirSync(join(out, 'runs', 'dm-s0')).length, 1);
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    assert.match(md, /\| dm from pre \| 4 \| 56 \|/);
    assert.match(md, /floor: 8 real training images/);
    for (const png of ['fid-vs-images.png', 'fid-vs-time.png']) assert.ok(existsSync(join(out, png)), png);
    assert.ok(existsSync(join(out, 'fid-vs-compute.png')));
    const rows = summarise(spec, first);
    assert.equal(rows.length, 4);
    assert.equal(rows.find((r) => r.arm.name === 'dm' && r.step === 4)!.fids.length, 2);
    // Counted compute: each stage's FLOPs per image (28 px gray, 10 classes) times its images, along the chain.
    const shape = { imageSize: 28, inChannels: 1, numClasses: 10 };
    const pre = 3 * 8 * trainingFlopsPerImage('pretrain', 'EPG-T/4', shape);
    const dm = (steps: number): number => steps * 8 * trainingFlopsPerImage('dm', 'EPG-T/4', shape);
    const ect = 2 * 8 * trainingFlopsPerImage('cm', 'EPG-T/4', { ...shape, perceptual: false });
    const flops = (arm: string, step: number): number => rows.find((r) => r.arm.name === arm && r.step === step)!.flops;
    assert.equal(flops('dm', 2), dm(2) + pre);
    assert.equal(flops('dm-scratch', 4), dm(4));
    assert.equal(flops('ect', 2), ect + dm(4) + pre);
    assert.match(md, /training compute/);
  });

  test('--report rewrites the report from results.json alone; without one it says to run first', async () => {
    rmSync(join(out, 'results.md'));
    const lines: string[] = [];
    const state = await runExperiment({ file, out, reportOnly: true, log: (l) => lines.push(l) });
    assert.deepEqual(state.evaluations, first.evaluations);
    assert.match(readFileSync(join(out, 'results.md'), 'utf8'), /\| dm from pre \| 4 \| 56 \|/);
    assert.ok(!lines.some((l) => l.trim().startsWith('== ')), 'nothing trained or evaluated');
    await assert.rejects(
      runExperiment({ file, out: join(root, 'never-run'), reportOnly: true }),
      /nothing to report yet \(run the experiment first\)/,
    );
  });

  test('a rerun trains and evaluates nothing', async () => {
    const lines: string[] = [];
    const again = await runExperiment({ file, out, log: (l) => lines.push(l) });
    assert.deepEqual(again.evaluations, first.evaluations);
    assert.ok(!lines.some((l) => l.trim().startsWith('== ')), lines.join('\n'));
  });

  test('stopped between evaluations, it continues with what is missing only', async () => {
    // As if stopped after dm-s1's evaluation at step 2: its run is at step 2 and later work is missing.
    const state = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as ExperimentState;
    const cut = state.evaluations.filter((e) => e.seed === 0 || (e.arm === 'dm' && e.step === 2));
    const s1 = state.runs['dm-s1']!;
    rmSync(s1.runDir, { recursive: true });
    writeFileSync(join(out, 'results.json'), JSON.stringify({ ...state, evaluations: cut }));
    const lines: string[] = [];
    const resumed = await runExperiment({ file, out, log: (l) => lines.push(l) });
    const redone = lines.map((l) => l.trim()).filter((l) => l.startsWith('== '));
    assert.deepEqual(redone, [
      '== dm-s1: steps 0 → 4 of 4 ==',
      '== dm-s1: sampling and evaluating step 4 ==',
      '== dm-scratch-s1: sampling and evaluating step 4 ==',
      '== ect-s1: sampling and evaluating step 2 ==',
    ]);
    assert.equal(resumed.evaluations.length, 8);
    // Trained in one piece now (0 → 4), in two before (0 → 2 → 4): resumption is exact on the CPU,
    // so the same model, the same samples and the same FID.
    const fid = (s: ExperimentState, arm: string) =>
      s.evaluations.find((e) => e.arm === arm && e.seed === 1 && e.step === 4)!.fid;
    assert.equal(fid(resumed, 'dm'), fid(first, 'dm'));
    assert.equal(fid(resumed, 'dm-scratch'), fid(first, 'dm-scratch'));
  });
});

describe('runExperiment --reuse', () => {
  // Runs after the describe above, whose output folder holds finished runs of `spec`.
  const out = join(root, 'out');
  const other = join(root, 'reusing');
  const reusing: ExperimentSpec = {
    ...spec,
    name: 'tiny-reuse',
    arms: [
      { name: 'pre-again', config: 'fashion-mnist-pretrain', set: ['steps=3'] },
      {
        name: 'dm-again',
        config: 'fashion-mnist-dm',
        set: ['steps=4', 'logEvery=2'], // logging is bookkeeping: still the same run
        init: 'pre-again',
        evalAt: [2],
        sample: { sampler: 'euler', steps: 2, cfg: 1 },
      },
      // ECT from the reused dm run: its config.json holds cmPrecond 'x0', resolved from this 'auto'.
      {
        name: 'ect-again',
        config: 'fashion-mnist-cm',
        set: ['steps=2'],
        init: 'dm-again',
        sample: { sampler: 'onestep' },
      },
      { name: 'pre-longer', config: 'fashion-mnist-pretrain', set: ['steps=5'] },
    ],
  };

  test('uses the same runs of another experiment instead of training them, and evaluates them alike', async () => {
    const file = write('tiny-reuse.json', reusing);
    const lines: string[] = [];
    const state = await runExperiment({ file, out: other, reuse: [out], log: (l) => lines.push(l) });
    const headings = lines.map((l) => l.trim()).filter((l) => l.startsWith('== ') && !l.includes('floor'));
    const firstState = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as ExperimentState;
    const src = join(out, 'results.json');
    assert.deepEqual(
      headings.map((l) => l.replace(/ \(.*\), the same run/, ', the same run')),
      [
        `== pre-again-s0: reusing ${src}#pre-s0, the same run ==`,
        `== dm-again-s0: reusing ${src}#dm-s0, the same run ==`,
        '== dm-again-s0: sampling and evaluating step 2 ==',
        `== ect-again-s0: reusing ${src}#ect-s0, the same run ==`,
        '== ect-again-s0: sampling and evaluating step 2 ==',
        '== pre-longer-s0: steps 0 → 5 of 5 ==', // another config: trained here
        `== pre-again-s1: reusing ${src}#pre-s1, the same run ==`,
        // dm-s1 was retrained in one piece above, so its step-2 checkpoint was not kept.
        '== dm-again-s1: steps 0 → 2 of 4 ==',
        '== dm-again-s1: sampling and evaluating step 2 ==',
        '== ect-again-s1: steps 0 → 2 of 2 ==', // its init, dm-again-s1, was trained here: another run
        '== ect-again-s1: sampling and evaluating step 2 ==',
        '== pre-longer-s1: steps 0 → 5 of 5 ==',
      ],
    );
    assert.ok(lines.some((l) => /#dm-s1 is the same run but kept no checkpoint of step 2: not reusing it/.test(l)));
    assert.equal(state.runs['pre-again-s0']!.runDir, firstState.runs['pre-s0']!.runDir);
    assert.ok(!existsSync(join(other, 'runs', 'pre-again-s0')), 'nothing trained or copied');
    // The same weights, the same samples: the same FID, also for the run trained here from a reused init.
    const fid = (s: ExperimentState, arm: string, seed: number): number =>
      s.evaluations.find((e) => e.arm === arm && e.seed === seed && e.step === 2)!.fid;
    assert.equal(fid(state, 'dm-again', 0), fid(firstState, 'dm', 0));
    assert.equal(fid(state, 'ect-again', 0), fid(firstState, 'ect', 0));
    assert.equal(fid(state, 'dm-again', 1), fid(firstState, 'dm', 1));
    // Step 2 of a 4-step reused run: its images, and its init's.
    const e0 = state.evaluations.find((e) => e.arm === 'dm-again' && e.seed === 0)!;
    assert.equal(e0.images, 2 * 8 + 3 * 8);
    const report = readFileSync(join(other, 'results.md'), 'utf8');
    assert.match(report, /reused here \(`--reuse`\): pre-again-s0 = `/);
    assert.match(report, /evaluated before the step it reached, its training time there is prorated/);

    const again: string[] = [];
    await runExperiment({ file, out: other, log: (l) => again.push(l) });
    assert.ok(!again.some((l) => l.trim().startsWith('== ')), 'a rerun, even without --reuse, does nothing');
  });

  test("prefers another experiment's finished run to its own unfinished one, which it leaves in place", async () => {
    const name = 'tiny-reuse-partial';
    const file = write(`${name}.json`, { ...reusing, name, seeds: [0], arms: [reusing.arms[0]!] });
    const here = join(root, name);
    const partial = join(here, 'runs', 'pre-again-s0', '00000-pretrain-stopped-early');
    mkdirSync(partial, { recursive: true }); // as if stopped before --reuse was given
    const lines: string[] = [];
    const state = await runExperiment({ file, out: here, reuse: [out], log: (l) => lines.push(l) });
    const firstState = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as ExperimentState;
    assert.equal(state.runs['pre-again-s0']!.runDir, firstState.runs['pre-s0']!.runDir);
    assert.ok(
      lines.some((l) => l.includes(`${partial} (step 0) is set aside, not deleted`)),
      lines.join('\n'),
    );
    assert.ok(!lines.some((l) => /steps 0 → /.test(l)), 'nothing trained');
    assert.ok(existsSync(partial));
  });

  test('a folder that is not an experiment output is named', async () => {
    const file = write('tiny-reuse-2.json', { ...reusing, name: 'tiny-reuse-2' });
    await assert.rejects(
      runExperiment({ file, out: join(root, 'reusing-2'), reuse: [join(root, 'cache')], log: () => {} }),
      /--reuse .*cache: no results\.json there; name an experiment's output folder/,
    );
  });
});

describe('loadExperiment', () => {
  test('the shipped experiments load and name existing configs', () => {
    const dir = join(import.meta.dirname, '..', '..', 'experiments');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 3, `shipped experiments: ${files.join(', ')}`);
    for (const f of files) {
      const s = loadExperiment(resolveExperimentFile(f.slice(0, -5), dir));
      assert.ok(s.seeds.length >= 2, `${f}: at least two seeds`);
      assert.ok(s.eval.num >= 1000, `${f}: at least 1,000 samples per evaluation`);
    }
  });

  test('every problem names the key and what is valid', () => {
    const bad = (patch: Partial<ExperimentSpec> | Record<string, unknown>, re: RegExp) =>
      assert.throws(() => loadExperiment(write('bad.json', { ...spec, ...patch })), re);
    bad({ seed: [0] }, /unknown key 'seed' \(valid keys: name, description, dataset, seeds/);
    bad({ seeds: [] }, /'seeds' must be a non-empty list/);
    bad({ dataset: 'mnist' }, /'dataset' must be 'fashion-mnist' or 'cifar10'/);
    bad({ eval: { num: 10, ref: 3 } }, /eval: unknown key 'ref'/);
    bad(
      { arms: [{ name: 'dm', config: 'fashion-mnist-dm', init: 'pre' }] },
      /'init' names 'pre', which is not an arm declared before it/,
    );
    bad({ arms: [{ name: 'dm', config: 'x', evalAt: [5] }] }, /'evalAt' needs 'sample'/);
    bad({ arms: [{ name: 'dm', config: 'x', sample: { sampler: 'ddim' } }] }, /'sample.sampler' must be one of heun/);
    bad(
      { arms: [{ name: 'dm', config: 'x', sample: { sampler: 'onestep', interval: [1.6, 0.2] } }] },
      /'sample.interval' must be \[LO, HI\] .* or "all"/,
    );
    bad({ arms: [{ name: 'Big Arm', config: 'x' }] }, /'name' must be lower-case/);
    // Configs and overrides resolve when the file loads, not when the run reaches the arm.
    bad({ arms: [{ name: 'dm', config: 'no-such-config' }] }, /arms\[0\] \(dm\): .*no-such-config/);
    bad(
      { arms: [{ name: 'dm', config: 'fashion-mnist-dm', set: ['optim.schedul=cosine'] }] },
      /arms\[0\] \(dm\): .*optim\.schedul/,
    );
    assert.throws(() => loadExperiment(write('broken.json', '{')), /invalid JSON/);
    assert.throws(() => loadExperiment(join(root, 'none.json')), /does not exist/);
    assert.throws(() => resolveExperimentFile('no-such', join(root)), /neither a file nor a shipped experiment/);
  });
});
