// The patch-edge ratio against a plain loop over the pixels, its closed forms
// (a linear ramp: exactly 1; constant patches: no inner differences), and its
// errors for a bad layout or a patch that does not tile the image.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import * as torch from '@epg/torch';

import { npzPatchEdgeRatio, patchEdgeRatio, saveImagesNpz } from '../src/eval/index.js';

const root = mkdtempSync(join(tmpdir(), 'epg-patch-edges-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** The ratio by definition, one pixel pair at a time (images [N, H, W, C] as a flat array). */
function loopRatio(px: ArrayLike<number>, [N, H, W, C]: readonly [number, number, number, number], p: number): number {
  const at = (n: number, h: number, w: number): number => {
    let s = 0;
    for (let c = 0; c < C; c++) s += px[((n * H + h) * W + w) * C + c]!;
    return s / C;
  };
  let edge = 0;
  let edgeN = 0;
  let inner = 0;
  let innerN = 0;
  const add = (d: number, boundary: boolean): void => {
    if (boundary) {
      edge += d;
      edgeN++;
    } else {
      inner += d;
      innerN++;
    }
  };

  for (let n = 0; n < N; n++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        if (w + 1 < W) add(Math.abs(at(n, h, w + 1) - at(n, h, w)), w % p === p - 1);
        if (h + 1 < H) add(Math.abs(at(n, h + 1, w) - at(n, h, w)), h % p === p - 1);
      }
  return edge / edgeN / (inner / innerN);
}

test('patchEdgeRatio equals the pixel-by-pixel definition (uint8 and float, 1 and 3 channels)', () => {
  const gen = new torch.Generator('cpu', 5);
  for (const shape of [
    [3, 28, 28, 1],
    [2, 8, 12, 3],
  ] as const) {
    torch.tidy(() => {
      const images = torch.randint(0, 256, [...shape], { generator: gen, dtype: 'uint8' });
      const px = Array.from(images.toTypedArray() as Uint8Array);
      for (const p of [2, 4]) {
        const want = loopRatio(px, shape, p);
        const got = patchEdgeRatio(images, p);
        assert.ok(Math.abs(got - want) < 1e-12 * want, `${shape} p${p}: ${got} vs ${want}`);
        assert.ok(Math.abs(patchEdgeRatio(images.float(), p) - want) < 1e-9 * want);
      }
    });
  }
  gen.dispose();
});

test('patchEdgeRatio closed forms: a linear ramp scores 1, flat patches on a ramp show their edges', () => {
  torch.tidy(() => {
    // x + 2y on 8×8: every horizontal step is 1 and every vertical one 2, at boundaries and within alike.
    const ramp = Array.from({ length: 64 }, (_, i) => (i % 8) + 2 * Math.floor(i / 8));
    const img = (px: number[]) => torch.tensor(px, { dtype: 'float64' }).reshape(1, 8, 8, 1);
    assert.equal(patchEdgeRatio(img(ramp), 4), 1);
    // Adding 40 to the right half only steps at column 3 → 4, a boundary: within, |Δ| stays 1 (x) and 2 (y);
    // across, the 8 vertical boundary pairs keep 2 and the 8 horizontal ones become 41.
    // Edge pairs: 8 horizontal (|Δ| 41) + 8 vertical (2); inner: 48 horizontal (1) + 48 vertical (2).
    const stepped = ramp.map((v, i) => v + (i % 8 >= 4 ? 40 : 0));
    assert.equal(patchEdgeRatio(img(stepped), 4), (8 * 41 + 8 * 2) / 16 / ((48 * 1 + 48 * 2) / 96));
  });
});

test('npzPatchEdgeRatio reads samples.npz; a bad layout or patch is refused with the shape', () => {
  torch.tidy(() => {
    const images = torch.randint(0, 256, [4, 1, 28, 28], { dtype: 'uint8' });
    const path = join(root, 'samples.npz');
    saveImagesNpz(path, images); // gray → RGB, [N, H, W, 3]: the channel mean is the gray image
    const nhwc = images.permute(0, 2, 3, 1);
    assert.equal(npzPatchEdgeRatio(path, 4), patchEdgeRatio(nhwc, 4));
    assert.throws(() => patchEdgeRatio(images.reshape(4, 28, 28), 4), /must be \[N, H, W, C\], got \[4, 28, 28\]/);
    assert.throws(() => patchEdgeRatio(nhwc, 5), /patch 5 must be an integer ≥ 2 that divides 28×28/);
  });
});
