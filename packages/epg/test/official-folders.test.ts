// The released checkpoints' layout: folders holding nnet_ema.pth, named for the
// model (EPG-XL16-imagenet256/, EPG-L16-imagenet256-onestep/, RCM-B-IN256/).
// `epg sample --checkpoint FOLDER` finds the weights and the preset (from the
// name, else the shapes); `epg finetune --set finetune.init=RCM-…` starts from a
// released encoder. Small weights written by PyTorch (test/ref/epg_ref.py).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { io, testing } from '@epg/torch';

import { encoderConfig, epgConfig, getPreset, officialFolder, parseOfficialFolderName } from '../src/index.js';
import { loadNpz } from '../src/eval/index.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'src', 'cli.js');
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'epg_ref.py');
const root = mkdtempSync(join(tmpdir(), 'epg-official-'));
after(() => rmSync(root, { recursive: true, force: true }));

function epg(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Writes PyTorch-saved random weights of `preset` (the whole model, or the pre-training encoder) into dir/nnet_ema.pth. */
function writeOfficial(dir: string, preset: string, model: 'epg' | 'rcm', seed: number): string {
  mkdirSync(dir, { recursive: true });
  const p = getPreset(preset);
  const config = model === 'epg' ? epgConfig(p, { numClasses: 1000 }) : encoderConfig(p);
  const n = p.inChannels * p.imageSize * p.imageSize;
  const [r] = testing.runPython(SCRIPT, [
    {
      kind: 'save_official',
      model,
      config,
      seed,
      path: join(dir, 'nnet_ema.pth'),
      x: { shape: [1, p.inChannels, p.imageSize, p.imageSize], dtype: 'float64', data: Array<number>(n).fill(0) },
      t: { shape: [1], dtype: 'float64', data: [0] },
      y: { shape: [1], dtype: 'int64', data: [0] },
    },
  ]) as { error?: string }[];
  assert.equal(r!.error, undefined, r!.error);
  return dir;
}

test('the released folder names give the preset and the stage', () => {
  assert.deepEqual(parseOfficialFolderName('EPG-XL16-imagenet256'), { preset: 'EPG-XL/16', stage: 'dm' });
  assert.deepEqual(parseOfficialFolderName('EPG-L16-imagenet256-onestep'), { preset: 'EPG-L/16', stage: 'cm' });
  assert.deepEqual(parseOfficialFolderName('EPG-XXL16-imagenet256'), { preset: 'EPG-XXL/16', stage: 'dm' });
  assert.deepEqual(parseOfficialFolderName('EPG-G16-imagenet256'), { preset: 'EPG-G/16', stage: 'dm' });
  assert.deepEqual(parseOfficialFolderName('EPG-L32-imagenet512'), { preset: 'EPG-L/32', stage: 'dm' });
  assert.deepEqual(parseOfficialFolderName('RCM-B-IN256'), { preset: 'RCM-B', stage: 'pretrain' });
  assert.deepEqual(parseOfficialFolderName('RCM-L-IN256'), { preset: 'RCM-L', stage: 'pretrain' });
  assert.equal(parseOfficialFolderName('runs'), null);
  assert.equal(parseOfficialFolderName('EPG-Q16-imagenet256'), null);
});

test('a folder of another name: the preset and stage from the weights; not a folder of ours', () => {
  const dm = officialFolder(writeOfficial(join(root, 'my-model'), 'EPG-S/4', 'epg', 1));
  assert.equal(dm?.preset, 'EPG-S/4');
  assert.equal(dm?.stage, 'dm');
  const enc = officialFolder(writeOfficial(join(root, 'RCM-S4-cifar10'), 'EPG-S/4', 'rcm', 2));
  assert.equal(enc?.preset, 'EPG-S/4');
  assert.equal(enc?.stage, 'pretrain');
  assert.equal(officialFolder(root), null, 'a folder without nnet_ema.pth / nnet.pth');
});

test('epg sample --checkpoint FOLDER: the layout, its preset from the name, the same samples as the file with --preset', () => {
  const dir = writeOfficial(join(root, 'EPG-S4-cifar10'), 'EPG-S/4', 'epg', 3);
  const common = ['--num', '3', '--steps', '3', '--no-png'];
  const a = epg('sample', '--checkpoint', dir, ...common, '--out', join(root, 'sa'));
  assert.equal(a.code, 0, a.err);
  assert.match(a.out, /3 samples with heun/);
  const b = epg(
    'sample',
    '--checkpoint',
    join(dir, 'nnet_ema.pth'),
    '--preset',
    'EPG-S/4',
    ...common,
    '--out',
    join(root, 'sb'),
  );
  assert.equal(b.code, 0, b.err);
  const read = (d: string): Uint8Array =>
    torch.tidy(() => loadNpz(join(d, 'samples.npz'), ['arr_0']).arr_0!.toTypedArray() as Uint8Array);
  assert.deepEqual(read(join(root, 'sa')), read(join(root, 'sb')));
  // A consistency model's folder (…-onestep) samples with the one-step sampler by default.
  const cm = writeOfficial(join(root, 'EPG-S4-cifar10-onestep'), 'EPG-S/4', 'epg', 4);
  const c = epg('sample', '--checkpoint', cm, ...common, '--out', join(root, 'sc'));
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /3 samples with onestep: 1 NFE/);
});

test('epg finetune --set finetune.init=RCM-…: starts from the released encoder', () => {
  // EPG-T/4 is the fashion-mnist configs' preset; the folder's name does not state it: the shapes do.
  const dir = writeOfficial(join(root, 'RCM-T4-fashion-mnist'), 'EPG-T/4', 'rcm', 5);
  const runs = join(root, 'runs');
  const r = epg(
    'finetune',
    '--mode',
    'dm',
    '--config',
    'fashion-mnist-dm',
    '--set',
    `runDir=${runs}`,
    '--set',
    `finetune.init=${dir}`,
    '--set',
    'steps=1',
    '--set',
    'batchSize=4',
    '--set',
    'sampleCount=0',
  );
  assert.equal(r.code, 0, r.err);
  // The first update has lr factor 0 (LambdaLR's fn(0)): the saved encoder is the released one.
  const [run] = readdirSync(runs);
  const ck = loadCheckpoint(join(runs, run!));
  const official = io.loadStateDict(join(dir, 'nnet_ema.pth'));
  try {
    for (const k of ['blocks.0.attn.qkv.weight', 'pos_embed', 'patch_embed.proj.weight']) {
      const [ours, theirs] = [ck.tensors.get(`model.${k}`)!, official.get(k)!];
      testing.assertClose(
        Array.from(ours.double().toTypedArray() as Float64Array),
        Array.from(theirs.double().toTypedArray() as Float64Array),
        1e-6,
        1e-7,
        k,
      );
    }
  } finally {
    for (const t of [...ck.tensors.values(), ...official.values()]) t.dispose();
  }
});
