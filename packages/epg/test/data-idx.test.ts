// IDX files (raw and gzip, every element type, big-endian sizes and data)
// written by Python, and Fashion-MNIST from Debian's dataset-fashion-mnist.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';

import {
  DataError,
  FASHION_MNIST_CLASSES,
  FashionMnist,
  InMemoryDataset,
  loadFashionMnist,
  parseIdx,
  readIdx,
} from '../src/data/index.js';
import { ref, tempDir } from './data-ref.js';

let tmp: { dir: string; cleanup: () => void };
before(() => {
  tmp = tempDir();
});
after(() => tmp.cleanup());

describe('readIdx', () => {
  const cases = [
    { dtype: 'uint8', shape: [3, 4, 5], gzip: false },
    { dtype: 'uint8', shape: [2, 7], gzip: true },
    { dtype: 'int8', shape: [6], gzip: false },
    { dtype: 'int16', shape: [2, 3], gzip: true },
    { dtype: 'int32', shape: [5], gzip: false },
    { dtype: 'float32', shape: [2, 2], gzip: false },
    { dtype: 'float64', shape: [3], gzip: true },
  ] as const;
  const values = (dtype: string, n: number): number[] =>
    Array.from({ length: n }, (_, i) => {
      if (dtype === 'uint8') return (i * 37) % 256;
      if (dtype === 'int8') return ((i * 37) % 256) - 128;
      if (dtype === 'int16') return i * 1234 - 3000;
      if (dtype === 'int32') return i * 123456789 - 300000000;
      return i * 0.375 - 1.25;
    });
  test('every element type, raw and gzip, as Python writes them', () => {
    const specs = cases.map((c, k) => ({
      op: 'make_idx',
      ...c,
      data: values(
        c.dtype,
        c.shape.reduce((a, b) => a * b, 1),
      ),
      path: join(tmp.dir, `f${k}.idx${c.gzip ? '.gz' : ''}`),
    }));
    ref(specs);
    specs.forEach((s) => {
      const a = readIdx(s.path);
      assert.equal(a.dtype, s.dtype);
      assert.deepEqual(a.shape, [...s.shape]);
      assert.deepEqual(Array.from(a.data), s.data, `${s.dtype} values`);
    });
  });

  test('bad magic, unknown type, truncation and trailing bytes are errors naming the file', () => {
    const good = new Uint8Array([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]);
    assert.deepEqual(Array.from(parseIdx(good).data), [7, 8, 9]);
    assert.throws(() => parseIdx(new Uint8Array([1, 2, 8, 1, 0, 0, 0, 0]), 'x.idx'), /x\.idx: not an IDX file/);
    assert.throws(() => parseIdx(new Uint8Array([0, 0, 0x07, 1, 0, 0, 0, 0]), 'x.idx'), /unknown IDX element type 0x7/);
    assert.throws(() => parseIdx(good.subarray(0, 10), 'x.idx'), /needs 11 bytes, the file has 10 \(truncated\)/);
    assert.throws(() => parseIdx(new Uint8Array([...good, 0]), 'x.idx'), /trailing data/);
    assert.throws(() => parseIdx(good.subarray(0, 6), 'x.idx'), /truncated IDX header/);
    const gz = gzipSync(good);
    assert.deepEqual(Array.from(parseIdx(gz).data), [7, 8, 9]);
    assert.throws(() => parseIdx(gz.subarray(0, gz.length - 6), 'x.gz'), /x\.gz: corrupt or truncated gzip/);
    const path = join(tmp.dir, 'trunc.idx');
    writeFileSync(path, good.subarray(0, 9));
    assert.throws(
      () => readIdx(path),
      (e: unknown) => e instanceof DataError && e.message.startsWith(path),
    );
    assert.throws(() => readIdx(join(tmp.dir, 'missing.idx')), /missing\.idx: cannot read IDX file/);
  });
});

describe('Fashion-MNIST (Debian dataset-fashion-mnist)', () => {
  test('train: 60000 28×28 gray images, labels 0-9, 6000 per class', () => {
    const ds = loadFashionMnist({ split: 'train' });
    assert.ok(ds instanceof InMemoryDataset);
    assert.equal(ds.length, 60000);
    assert.deepEqual([ds.channels, ds.height, ds.width], [1, 28, 28]);
    assert.equal(ds.numClasses, 10);
    assert.deepEqual(ds.classNames, FASHION_MNIST_CLASSES);
    const counts = new Array<number>(10).fill(0);
    for (const l of ds.labels) counts[l]!++;
    assert.deepEqual(counts, new Array<number>(10).fill(6000));
    // The first training image is an ankle boot (label 9), as torchvision's FashionMNIST has it.
    const first = ds.getSync(0);
    assert.equal(first.label, 9);
    assert.equal(first.pixels.length, 784);
    assert.ok(first.pixels.some((v) => v > 200));
  });
  test('test: 10000 images', async () => {
    const ds = FashionMnist.load({ split: 'test' });
    assert.equal(ds.length, 10000);
    assert.equal(ds.split, 'test');
    assert.ok(ds.labels.every((l) => l >= 0 && l < 10));
    const item = await ds.get(9999);
    assert.equal(item.pixels.length, 784);
    assert.throws(() => ds.getSync(10000), RangeError);
  });
  test('a missing root says what to install', () => {
    assert.throws(
      () => loadFashionMnist({ split: 'train', root: join(tmp.dir, 'nope') }),
      /Fashion-MNIST: .*not found/,
    );
    const idxDir = tmp.dir;
    // wrong image shape: a 2×3 IDX under the right names
    writeFileSync(
      join(idxDir, 'train-images-idx3-ubyte'),
      new Uint8Array([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]),
    );
    writeFileSync(join(idxDir, 'train-labels-idx1-ubyte'), new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 1, 2]));
    assert.throws(() => loadFashionMnist({ split: 'train', root: idxDir }), /expected uint8 \[N, 28, 28\] images/);
    assert.ok(readFileSync(join(idxDir, 'train-labels-idx1-ubyte')).length === 10);
  });
});
