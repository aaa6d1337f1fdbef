// Official checkpoints: a state dict saved by PyTorch with the official
// parameter names (as torch.save(model.state_dict()) writes nnet_ema.pth) loads
// into our EPGViT with no missing or unexpected keys and gives the same output;
// DDP-prefixed and wrapped dicts map; a pre-training checkpoint loads into the
// encoder with the projector dropped.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { testing } from '@epg/torch';

import { EPGViT, loadOfficialCheckpoint, type EncoderConfig, type EPGConfig } from '../src/index.js';
import { DEC as TINY_DEC } from './tiny-configs.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'epg_ref.py');

// RGB, 4 classes: the shared tiny network in the layout of an official checkpoint.
const DEC: EPGConfig = { ...TINY_DEC, inChannels: 3, numClasses: 4 };
const ENC: EncoderConfig = { ...DEC, projLayers: 3, projHiddenDim: 32, projOutputDim: 8 };

test('official EPGViT checkpoints (.pt, plain / DDP-prefixed / wrapped) load strictly and match PyTorch', () => {
  const dir = mkdtempSync(join(tmpdir(), 'epg-ckpt-'));
  try {
    torch.tidy(() => {
      const x = torch.randn([2, 3, 8, 8], { dtype: 'float64' });
      const t = torch.tensor([-200, 300]);
      const y = torch.tensor([1, 4], { dtype: 'int64' });
      const enc = testing.encodeTensor;
      const variants = [
        { name: 'plain', prefix: '', wrap: null },
        { name: 'DDP module. prefix', prefix: 'module.', wrap: null },
        { name: 'wrapped under "model"', prefix: '', wrap: 'model' },
      ];
      const refs = testing.runPython(
        SCRIPT,
        variants.map((v, i) => ({
          kind: 'save_official',
          model: 'epg',
          config: DEC,
          seed: i,
          prefix: v.prefix,
          wrap: v.wrap,
          path: join(dir, `${i}.pt`),
          x: enc(x),
          t: enc(t),
          y: enc(y),
        })),
      ) as { out: { data: number[] }; error?: string }[];
      variants.forEach((v, i) => {
        assert.equal(refs[i]!.error, undefined);
        const m = new EPGViT(DEC, { dtype: 'float64' });
        const r = loadOfficialCheckpoint(m, join(dir, `${i}.pt`), v.wrap ? { key: v.wrap } : {});
        assert.equal(r.loaded, m.stateDict().size, `${v.name}: every tensor loaded`);
        const out = torch.noGrad(() => m.forward(x, t, y));
        testing.assertClose(Array.from(out.toTypedArray() as Float64Array), refs[i]!.out.data, 1e-9, 1e-12, v.name);
        m.dispose();
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a pre-training (RCMViT) checkpoint initialises the encoder of an EPGViT; the projector is dropped', () => {
  const dir = mkdtempSync(join(tmpdir(), 'epg-ckpt-'));
  try {
    testing.runPython(SCRIPT, [
      { kind: 'save_official', model: 'rcm', config: ENC, seed: 3, path: join(dir, 'nnet.pth') },
    ]);
    torch.tidy(() => {
      const m = new EPGViT(DEC, { dtype: 'float64' });
      const r = loadOfficialCheckpoint(m, join(dir, 'nnet.pth'), { encoderOnly: true });
      assert.ok(
        r.dropped.some((k) => k.startsWith('projection_head.')),
        'projector dropped',
      );
      assert.ok(
        r.missing.every((k) => /^(decoder_blocks|encoder_to_decoder|out|out_norm|class_embed)\b/.test(k)),
        'only decoder keys missing',
      );
      assert.ok(r.missing.length > 0);
      // Without encoderOnly the missing decoder is an error listing the keys.
      assert.throws(() => loadOfficialCheckpoint(m, join(dir, 'nnet.pth')), /missing keys: .*decoder_blocks/);
      m.dispose();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(torch.liveTensors(), 0);
});
