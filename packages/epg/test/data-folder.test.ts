// ImageFolder from a directory and from zips (stored and deflated, made by
// Python's zipfile) read in place, in this thread and in decode workers;
// its errors; and the real CIFAR-10 zip (/work/shared/datasets).
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BatchReader, DataError, ImageFolder } from '../src/data/index.js';
import { CIFAR_ZIP, maxAbsDiff, meanAbsDiff, ref, tempDir, unb64 } from './data-ref.js';

let tmp: { dir: string; cleanup: () => void };
/** Relative paths, in the expected (sorted) order, with their labels and PIL pixels. */
const expected: { rel: string; label: number; pixels: Uint8Array }[] = [];
let root: string;
let zips: { stored: string; deflated: string };

// train/<class>/...: bird 0, cat 1, dog 2. Files are sorted within a class by path.
const layout: [string, number, string, Record<string, unknown>][] = [
  ['train/bird/a.png', 0, 'RGB', {}],
  ['train/bird/b.PNG', 0, 'L', {}], // gray: converted to RGB
  ['train/cat/c.png', 1, 'RGBA', {}],
  ['train/cat/deep/d.png', 1, 'P', {}],
  ['train/cat/e.jpg', 1, 'RGB', { smooth: true }],
  ['train/dog/f.png', 2, 'RGB', {}],
];

before(() => {
  tmp = tempDir();
  root = join(tmp.dir, 'tree');
  const cases = layout.map(([rel, , kind, extra], k) => {
    const path = join(root, rel);
    mkdirSync(join(path, '..'), { recursive: true });
    return { op: 'make_image', kind, h: 12, w: 10, seed: k, channels: 3, path, ...extra };
  });
  // Not images, or hidden: ignored.
  mkdirSync(join(root, 'train', '.cache'), { recursive: true });
  writeFileSync(join(root, 'train', 'cat', 'notes.txt'), 'not an image');
  writeFileSync(join(root, 'train', 'dog', '.hidden.png'), 'not an image');
  writeFileSync(join(root, 'train', 'README'), 'a file next to the class folders');
  mkdirSync(join(root, 'test', 'bird'), { recursive: true });
  mkdirSync(join(root, 'empty', 'cls'), { recursive: true });
  const results = ref(cases) as { pixels: string }[];
  layout.forEach(([rel, label], k) => expected.push({ rel, label, pixels: unb64(results[k]!.pixels) }));
  zips = { stored: join(tmp.dir, 'stored.zip'), deflated: join(tmp.dir, 'deflated.zip') };
  const files = layout.map(([rel]) => [join(root, rel), rel]);
  files.push([join(root, 'train', 'cat', 'notes.txt'), 'train/cat/notes.txt']);
  ref([
    { op: 'make_zip', path: zips.stored, deflate: false, files, dirs: ['train/', 'train/bird/', 'empty/', 'empty/x/'] },
    { op: 'make_zip', path: zips.deflated, deflate: true, files },
  ]);
});
after(() => tmp.cleanup());

/** HWC -> CHW of the reference pixels (10×12 RGB). */
function chw(hwc: Uint8Array): Uint8Array {
  const out = new Uint8Array(hwc.length);
  const n = hwc.length / 3;
  for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[c * n + i] = hwc[i * 3 + c]!;
  return out;
}

async function checkAgainstPil(ds: ImageFolder, what: string): Promise<void> {
  assert.deepEqual(ds.classNames, ['bird', 'cat', 'dog'], `${what}: classes`);
  assert.equal(ds.length, layout.length, `${what}: length`);
  assert.deepEqual([ds.channels, ds.height, ds.width], [3, 12, 10]);
  for (let i = 0; i < ds.length; i++) {
    const want = expected[i]!;
    assert.ok(ds.files[i]!.endsWith(want.rel.slice('train/'.length)), `${what}: file ${i} is ${ds.files[i]}`);
    const item = await ds.get(i);
    assert.equal(item.label, want.label, `${what}: label of ${want.rel}`);
    if (want.rel.endsWith('.jpg')) assert.ok(maxAbsDiff(item.pixels, chw(want.pixels)) <= 4, `${what}: ${want.rel}`);
    else assert.deepEqual(item.pixels, chw(want.pixels), `${what}: pixels of ${want.rel}`);
  }
}

describe('ImageFolder', () => {
  test('a directory: sorted classes give labels, pixels as PIL', async () => {
    using ds = ImageFolder.open({ root, subdir: 'train' });
    assert.equal(ds.isZip, false);
    await checkAgainstPil(ds, 'directory');
  });

  test('a zip, stored and deflated, read in place: the same images', async () => {
    const dir = ImageFolder.open({ root, subdir: 'train' });
    for (const path of [zips.stored, zips.deflated]) {
      using ds = ImageFolder.open({ root: path, subdir: 'train/' });
      assert.equal(ds.isZip, true);
      await checkAgainstPil(ds, path);
      for (let i = 0; i < ds.length; i++) assert.deepEqual((await ds.get(i)).pixels, (await dir.get(i)).pixels);
    }
    dir.close();
  });

  test('decode workers give exactly what this thread decodes (directory and zip)', async () => {
    for (const path of [root, zips.stored, zips.deflated]) {
      using ds = ImageFolder.open({ root: path, subdir: 'train' });
      const reader = new BatchReader(ds, 2);
      assert.equal(reader.mode, 'workers');
      const order = [5, 0, 3, 3, 1, 4, 2];
      const batch = await reader.read(order);
      for (let k = 0; k < order.length; k++) {
        const item = await ds.get(order[k]!);
        assert.deepEqual(batch.pixels.subarray(k * 360, (k + 1) * 360), item.pixels, `${path}: image ${order[k]}`);
        assert.equal(batch.labels[k], item.label);
      }
      await reader.close();
    }
  });

  test('channels: 1 gives PIL convert("L")', async () => {
    using ds = ImageFolder.open({ root, subdir: 'train', channels: 1 });
    const [gray] = ref([{ op: 'decode', paths: [join(root, layout[0]![0])], channels: 1 }]) as [{ pixels: string }[]];
    assert.equal(ds.channels, 1);
    assert.deepEqual((await ds.get(0)).pixels, unb64(gray[0]!.pixels));
  });

  test('missing paths, missing subdirs, empty classes, no classes: clear errors', () => {
    const missing = join(tmp.dir, 'nothing-here');
    assert.throws(
      () => ImageFolder.open({ root: missing }),
      new RegExp(`${missing} does not exist \\(expected a folder`),
    );
    assert.throws(() => ImageFolder.open({ root, subdir: 'val' }), /has no folder val/);
    assert.throws(
      () => ImageFolder.open({ root, subdir: 'test' }),
      /class folder .*test\/bird has no PNG or JPEG images/,
    );
    assert.throws(() => ImageFolder.open({ root, subdir: 'empty' }), /empty\/cls has no PNG or JPEG images/);
    assert.throws(() => ImageFolder.open({ root: join(root, 'train', 'bird') }), /has no class folders/);
    assert.throws(
      () => ImageFolder.open({ root: zips.stored, subdir: 'val' }),
      /has no folder val\/ \(its top-level folders: empty, train\)/,
    );
    assert.throws(
      () => ImageFolder.open({ root: zips.stored, subdir: 'empty' }),
      /class folder .*empty\/x has no PNG or JPEG images/,
    );
    const notZip = join(tmp.dir, 'plain.txt');
    writeFileSync(notZip, 'hello');
    assert.throws(() => ImageFolder.open({ root: notZip }), /is neither a folder nor a readable zip file/);
  });

  test('images of another size: an error naming the file, or the ADM crop with resolution', async () => {
    const mixed = join(tmp.dir, 'mixed');
    ref(
      [
        { op: 'make_image', kind: 'RGB', h: 12, w: 10, seed: 1, path: join(mixed, 'a', '1.png') },
        { op: 'make_image', kind: 'RGB', h: 20, w: 31, seed: 2, path: join(mixed, 'b', '2.png') },
      ].map((c) => (mkdirSync(join(c.path, '..'), { recursive: true }), c)),
    );
    const lazy = ImageFolder.open({ root: mixed });
    await assert.rejects(
      lazy.get(1),
      (e: unknown) =>
        e instanceof DataError && /b\/2\.png: image is 31×20 \(W×H\), the dataset's images are 10×12/.test(e.message),
    );
    assert.throws(
      () => ImageFolder.open({ root: mixed, checkSizes: true }),
      /b\/2\.png: image is 31×20 .*open the dataset with \{ resolution \}/,
    );
    const cropped = ImageFolder.open({ root: mixed, resolution: 8 });
    const [a, b] = ref([
      { op: 'center_crop', paths: [join(mixed, 'a', '1.png'), join(mixed, 'b', '2.png')], res: 8 },
    ])[0] as string[];
    assert.deepEqual((await cropped.get(0)).pixels, chw(unb64(a!)));
    assert.deepEqual((await cropped.get(1)).pixels, chw(unb64(b!)));
  });
});

describe('CIFAR-10 zip (JPEG, stored), read in place', () => {
  test('50000 train / 10000 test images, 10 classes airplane=0 … truck=9', async () => {
    using train = ImageFolder.open({ root: CIFAR_ZIP, subdir: 'train' });
    using testSet = ImageFolder.open({ root: CIFAR_ZIP, subdir: 'test' });
    const classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
    assert.deepEqual(train.classNames, classes);
    assert.deepEqual(testSet.classNames, classes);
    assert.equal(train.length, 50000);
    assert.equal(testSet.length, 10000);
    assert.deepEqual([train.channels, train.height, train.width], [3, 32, 32]);
    const count = (ds: ImageFolder): number[] => {
      const c = new Array<number>(10).fill(0);
      for (const l of ds.labels) c[l]!++;
      return c;
    };
    assert.deepEqual(count(train), new Array<number>(10).fill(5000));
    assert.deepEqual(count(testSet), new Array<number>(10).fill(1000));
    assert.equal(train.files[0], 'train/airplane/0000.jpg');
    assert.equal(train.labels[49999], 9);
    assert.ok(train.files[49999]!.startsWith('train/truck/'));
    // Pixels against PIL: jpeg-js's IDCT rounding only.
    const picks = [0, 12345, 49999];
    const [pil] = ref([{ op: 'decode_zip', path: CIFAR_ZIP, names: picks.map((i) => train.files[i]) }]) as [string[]];
    for (let k = 0; k < picks.length; k++) {
      const item = await train.get(picks[k]!);
      const want = chw(unb64(pil[k]!));
      assert.ok(
        maxAbsDiff(item.pixels, want) <= 4 && meanAbsDiff(item.pixels, want) < 0.5,
        `image ${train.files[picks[k]!]}`,
      );
    }
  });
});
