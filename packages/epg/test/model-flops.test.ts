// The analytic FLOP counts behind MFU (models/flops.ts): against a closed form
// written out by hand for the tiny configs, and against PyTorch's
// FlopCounterMode measuring the reference networks (test/ref/epg_ref.py).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { encoderForwardFlops, epgForwardFlops, mfu, trainingFlopsPerImage } from '../src/models/flops.js';
import { encoderConfig, epgConfig, getPreset } from '../src/models/presets.js';
import type { EncoderConfig, EPGConfig } from '../src/models/vit.js';
import { DEC, ENC } from './tiny-configs.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'epg_ref.py');

/** Forward FLOPs per image that FlopCounterMode measures, for each network (one Python process). */
function measured(nets: ['epg' | 'rcm', EncoderConfig | EPGConfig][]): number[] {
  const dir = mkdtempSync(join(tmpdir(), 'epg-flops-'));
  try {
    writeFileSync(
      join(dir, 'in.json'),
      JSON.stringify(nets.map(([model, config]) => ({ kind: 'flops', model, config }))),
    );
    const r = spawnSync('python3', [SCRIPT, join(dir, 'in.json'), join(dir, 'out.json')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const outs = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { flops?: number; error?: string }[];
    return outs.map((o) => {
      assert.equal(o.error, undefined, o.error);
      return o.flops!;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('epgForwardFlops: the tiny EPG config, term by term', () => {
  // 8×8 images, patch 4, 2 channels: 4 patches + CLS + time = 6 tokens; D = 16, D_dec = 24, depth 2.
  const L = 6;
  const enc = 2 * 4 * (2 * 16) * 16 + 2 * (2 * L * 16 * 48 + 2 * 2 * L * L * 16 + 2 * L * 16 * 16 + 4 * L * 16 * 64);
  const toDec = 2 * L * 16 * 24;
  const dec =
    2 * (2 * L * 40 * 24 + 2 * 16 * 144 + 2 * L * 24 * 72 + 4 * L * L * 24 + 2 * L * 24 * 24 + 4 * L * 24 * 96);
  const head = 2 * 4 * 24 * 32;
  assert.equal(epgForwardFlops(DEC), enc + toDec + dec + head);
  // The encoder adds its projector (16 → 24 → 24 → 12, on CLS only).
  assert.equal(encoderForwardFlops(ENC), enc + 2 * (16 * 24 + 24 * 24 + 24 * 12));
});

test('epgForwardFlops, encoderForwardFlops: equal to the FLOPs PyTorch measures on the reference networks', () => {
  // And a preset at its own size (decoder as wide as the encoder: no encoder_to_decoder).
  const t4 = getPreset('EPG-T/4');
  const o = { numClasses: 10 };
  const [epg, rcm, epgT4, rcmT4] = measured([
    ['epg', DEC],
    ['rcm', ENC],
    ['epg', epgConfig(t4, o)],
    ['rcm', encoderConfig(t4, o)],
  ]);
  assert.equal(epgForwardFlops(DEC), epg);
  assert.equal(encoderForwardFlops(ENC), rcm);
  assert.equal(epgForwardFlops(epgConfig(t4, o)), epgT4);
  assert.equal(encoderForwardFlops(encoderConfig(t4, o)), rcmT4);
});

test('trainingFlopsPerImage: passes per stage; mfu needs a peak', () => {
  const p = getPreset('EPG-T/4');
  const F = epgForwardFlops(epgConfig(p));
  const E = encoderForwardFlops(encoderConfig(p));
  assert.equal(trainingFlopsPerImage('dm', 'EPG-T/4'), 3 * F);
  assert.equal(trainingFlopsPerImage('cm', 'EPG-T/4'), 4 * F);
  assert.equal(trainingFlopsPerImage('cm', 'EPG-T/4', { perceptual: true }), 4 * F + 3 * E);
  assert.equal(trainingFlopsPerImage('pretrain', 'EPG-T/4'), 12 * E);
  assert.equal(mfu(1e12, 50, 100), 0.5);
  assert.ok(Number.isNaN(mfu(1e12, 50, 0)));
});
