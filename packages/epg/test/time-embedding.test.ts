// The time embedding against the official one computed by PyTorch
// (test/ref/time_embedding_ref.py): the frequencies bit for bit, in the official
// order, for every width of the presets (including the non-power-of-two halves
// 384, 768, 1280, 1584, where the order changes the rounding); the float32
// embedding of the official code; the float64 embedding of a float64 model, and
// a float64 EPGViT's time path at time inputs that are not float32-exact.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as torch from '@epg/torch';
import { testing } from '@epg/torch';

import { edm, EPGViT, PRESETS, timestepEmbedding, timestepFrequencies } from '../src/index.js';
import { DEC } from './tiny-configs.js';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(here, '..', '..', 'test', 'ref', 'time_embedding_ref.py');

const widths = [
  ...new Set(Object.values(PRESETS).flatMap((p) => [p.widths.embedDim, p.widths.decoderEmbedDim])),
  5,
  DEC.embedDim,
].sort((a, b) => a - b);
// t_in = 250·ln σ at σ = 320 (σ_max at 256 px), σ_min' = 0.008, a mid value, 0.
const tValues = [250 * Math.log(320), 250 * Math.log(0.008), 465.3991, 0, 250 * Math.log(3.7)];

interface RefWidth {
  f32: number[];
  f64: number[];
  emb32: number[];
  emb64: number[];
}
const ref = testing.runPython(SCRIPT, { widths, t: tValues }) as Record<string, RefWidth>;

const values = (t: torch.Tensor): number[] => torch.tidy(() => Array.from(t.double().toTypedArray() as Float64Array));

test('timestepFrequencies: bit for bit the official exp(−ln 10⁴·arange/half), every preset width', () => {
  assert.ok(widths.includes(768) && widths.includes(1584), `the preset widths: ${widths.join(', ')}`);
  for (const w of widths)
    torch.tidy(() => {
      assert.deepEqual(values(timestepFrequencies(w, 'float32')), ref[w]!.f32, `float32 frequencies, width ${w}`);
      assert.deepEqual(values(timestepFrequencies(w, 'float64')), ref[w]!.f64, `float64 frequencies, width ${w}`);
    });
  // The order matters (the test can fail): exp(arange·(−ln 10⁴/half)) rounds differently at width 768.
  const other = torch.tidy(() =>
    values(
      torch
        .arange(0, 384, 1, { dtype: 'float32' })
        .mul(-Math.log(10000) / 384)
        .exp(),
    ),
  );
  assert.notDeepEqual(other, ref[768]!.f32, 'the other order gives the same float32 frequencies at 768');
});

test('timestepEmbedding: the official float32 embedding, and float64 for a float64 model', () => {
  for (const w of widths) {
    torch.tidy(() => {
      const t = torch.tensor(tValues, { dtype: 'float64' });
      const e32 = timestepEmbedding(t, w);
      assert.equal(e32.dtype, 'float32');
      testing.assertClose(values(e32), ref[w]!.emb32, 0, 2e-7, `float32 embedding, width ${w}`);
      const e64 = timestepEmbedding(t, w, { dtype: 'float64' });
      assert.equal(e64.dtype, 'float64');
      testing.assertClose(values(e64), ref[w]!.emb64, 0, 1e-12, `float64 embedding, width ${w}`);
    });
  }
});

test('a float64 model computes the time path in float64 (t_in not float32-exact)', () => {
  torch.tidy(() => {
    const m = new EPGViT(DEC, { dtype: 'float64' });
    try {
      // σ values whose t_in = 250·ln σ is not a float32 number.
      const sigma = torch.tensor([0.0123456789, 1.2345678901, 123.456789012], { dtype: 'float64' });
      const tIn = edm.timeInput(sigma, 'float64');
      assert.equal(tIn.dtype, 'float64');
      const exact = [0.0123456789, 1.2345678901, 123.456789012].map((s) => 250 * Math.log(s + 1e-44));
      testing.assertClose(values(tIn), exact, 1e-15, 1e-12, 't_in in float64');
      const tau = m.timeEmbedding(tIn);
      assert.equal(tau.dtype, 'float64');
      const f = [...Array(DEC.embedDim / 2).keys()].map((i) => Math.exp((-Math.log(10000) * i) / (DEC.embedDim / 2)));
      const expected = exact.flatMap((t) => [...f.map((x) => Math.cos(t * x)), ...f.map((x) => Math.sin(t * x))]);
      testing.assertClose(values(tau), expected, 0, 1e-11, 'float64 embedding of a float64 model');
      // A float32 model keeps the official float32 embedding.
      const m32 = new EPGViT(DEC);
      assert.equal(m32.timeEmbedding(tIn).dtype, 'float32');
      m32.dispose();
    } finally {
      m.dispose();
    }
  });
});

test('time embedding: no native tensors leak', () => {
  assert.equal(torch.liveTensors(), 0);
});
