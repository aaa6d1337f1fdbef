// CUDA services. Without a GPU (or with an addon built without CUDA) they
// answer plainly and never crash; on a GPU machine the GPU tests run: device
// round trips, async reads, memory statistics, streams and CUDA graphs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as torch from '../src/index.js';
import { cuda, TorchError, type Tensor } from '../src/index.js';
import { native } from '../src/native.js';
import { assertClose } from './harness.js';

const available = cuda.isAvailable();
const noGpu = { skip: available ? 'a CUDA device is available' : false };
const gpu = { skip: available ? false : 'no CUDA device (or the addon was built without CUDA)' };

// ------------------------------------------------------------- without CUDA

test('without CUDA: isAvailable() is false and deviceCount() is 0', noGpu, () => {
  assert.equal(cuda.isAvailable(), false);
  assert.equal(cuda.deviceCount(), 0);
  assert.equal(torch.info().cudaAvailable, false);
});

test('without CUDA: synchronize() does nothing', noGpu, () => {
  cuda.synchronize();
  cuda.synchronize(0);
  assert.throws(() => cuda.synchronize(-5), TypeError);
});

test('without CUDA: memory stats, caches, streams and graphs throw an Error that says CUDA', noGpu, () => {
  const calls: [string, () => unknown][] = [
    ['setDevice', () => cuda.setDevice(0)],
    ['memoryStats', () => cuda.memoryStats()],
    ['currentDevice', () => cuda.currentDevice()],
    ['memoryStats(0)', () => cuda.memoryStats(0)],
    ['memoryAllocated', () => cuda.memoryAllocated()],
    ['maxMemoryAllocated', () => cuda.maxMemoryAllocated()],
    ['resetPeakMemoryStats', () => cuda.resetPeakMemoryStats()],
    ['emptyCache', () => cuda.emptyCache()],
    ['Stream.create', () => cuda.Stream.create()],
    ['Stream.current', () => cuda.Stream.current()],
    ['new CUDAGraph', () => new cuda.CUDAGraph()],
  ];
  for (const [what, fn] of calls) assert.throws(fn, { message: /CUDA/ }, what);
});

test('without CUDA: CUDA tensors and generators are TorchErrors, not crashes', noGpu, () => {
  const t = torch.ones([2]);
  try {
    assert.throws(() => t.to('cuda'), TorchError);
    assert.throws(() => t.cuda(), TorchError);
    assert.throws(() => t.to({ device: 'cuda:1', dtype: 'float16' }), TorchError);
  } finally {
    t.dispose();
  }
  assert.throws(() => torch.zeros([2], { device: 'cuda' }), TorchError);
  assert.throws(() => torch.randn([2], { device: 'cuda:0' }), TorchError);
  assert.throws(() => new torch.Generator('cuda'), TorchError);
  assert.equal(torch.liveTensors(), 0);
});

test('without CUDA: pinMemory() is a TorchError that says why; isPinned() is false', noGpu, () => {
  torch.tidy(() => {
    const t = torch.ones([4]);
    assert.equal(t.isPinned(), false);
    assert.throws(
      () => t.pinMemory(),
      (e: Error) => e instanceof TorchError && /NVIDIA|CUDA/i.test(e.message),
    );
  });
});

test('without CUDA: autocast for cuda can be entered and leaves CPU math alone', noGpu, () => {
  torch.tidy(() => {
    const a = torch.ones([4, 4]);
    const y = torch.autocast('cuda', () => a.matmul(a));
    assert.equal(y.dtype, 'float32');
    assert.equal(torch.isAutocastEnabled('cuda'), false);
  });
});

// ---------------------------------------------------------------- with CUDA

test('GPU: device round trip and async reads from the device', gpu, async () => {
  const base = torch.liveTensors();
  const host = torch.arange(12, undefined, undefined, { dtype: 'float32' }).reshape(3, 4);
  const dev = host.cuda();
  try {
    assert.match(dev.device, /^cuda(:0)?$/);
    assert.deepEqual(dev.shape, [3, 4]);
    assert.deepEqual(dev.toArray(), host.toArray());
    const pending = dev.toTypedArrayAsync();
    assert.ok(pending instanceof Promise);
    assert.deepEqual(await pending, host.toTypedArray());
    assert.deepEqual(await dev.toArrayAsync(), host.toArray());
    const s = torch.tidy(() => dev.sum());
    assert.equal(await s.itemAsync(), 66);
    s.dispose();
    const half = torch.tidy(() => dev.half().mul(2));
    assert.deepEqual(
      await half.toArrayAsync(),
      torch.tidy(() => host.mul(2).toArray()),
    );
    half.dispose();
    // A large read, with the tensor disposed while the copy is in flight.
    const big = torch.ones([1 << 24], { device: 'cuda' });
    const read = big.toTypedArrayAsync();
    big.dispose();
    const data = (await read) as Float32Array;
    assert.equal(data.length, 1 << 24);
    assert.ok(data[0] === 1 && data[(1 << 24) - 1] === 1);
    assert.throws(() => dev.to('cuda:99'), TorchError);
  } finally {
    host.dispose();
    dev.dispose();
  }
  assert.equal(torch.liveTensors(), base);
});

test('GPU: memory statistics follow allocations; emptyCache returns cached blocks', gpu, () => {
  cuda.synchronize();
  const before = cuda.memoryStats();
  for (const k of ['allocatedBytes', 'allocatedBytesPeak', 'reservedBytes', 'reservedBytesPeak'] as const)
    assert.ok(Number.isFinite(before[k]) && before[k] >= 0, k);
  const bytes = 64 * 2 ** 20;
  const t = torch.empty([bytes / 4], { device: 'cuda' });
  const during = cuda.memoryStats();
  assert.ok(during.allocatedBytes >= before.allocatedBytes + bytes, 'allocatedBytes grew by the tensor');
  assert.ok(cuda.maxMemoryAllocated() >= during.allocatedBytes);
  t.dispose();
  assert.ok(cuda.memoryAllocated() <= during.allocatedBytes - bytes);
  cuda.resetPeakMemoryStats();
  assert.ok(cuda.maxMemoryAllocated() < during.allocatedBytes, 'the peak was reset');
  cuda.emptyCache();
  assert.ok(cuda.memoryStats().reservedBytes <= during.reservedBytes - bytes);
  assert.throws(() => cuda.memoryStats(99), TypeError);
});

test('GPU: work on a side stream, joined back, gives the eager result', gpu, () => {
  torch.manualSeed(0);
  torch.tidy(() => {
    const a = torch.randn([256, 256], { device: 'cuda' });
    const expect = a.matmul(a).relu().sum(0).cpu().toTypedArray() as Float32Array;
    using side = cuda.Stream.create();
    using current = cuda.Stream.current();
    side.waitStream(current);
    const out = cuda.withStream(side, () => a.matmul(a).relu().sum(0));
    current.waitStream(side);
    side.synchronize();
    assertClose(out.cpu().toTypedArray() as Float32Array, expect, 1e-5, 1e-5, 'side stream');
  });
});

test('GPU: a captured CUDA graph replays the computation on new inputs', gpu, () => {
  torch.manualSeed(0);
  const f = (x: Tensor): Tensor => x.matmul(x).relu().add(1).mul(0.5);
  const x = torch.randn([64, 64], { device: 'cuda' });
  // Warm up (cuBLAS handles, workspaces) outside the capture, as PyTorch advises.
  torch.tidy(() => f(x));
  cuda.synchronize();
  const graph = new cuda.CUDAGraph();
  let out: Tensor | undefined;
  try {
    out = torch.tidy(() => graph.capture(() => f(x)));
    for (let i = 0; i < 3; i++) {
      torch.tidy(() => {
        x.copy_(torch.randn([64, 64], { device: 'cuda' }));
        const eager = f(x).cpu().toTypedArray() as Float32Array;
        graph.replay();
        cuda.synchronize();
        assertClose(out!.cpu().toTypedArray() as Float32Array, eager, 1e-5, 1e-5, `replay ${i}`);
      });
    }
    // A failing capture ends the capture and leaves the process usable.
    using g2 = new cuda.CUDAGraph();
    assert.throws(() =>
      g2.capture(() => {
        throw new Error('inside capture');
      }),
    );
    torch.tidy(() => assert.equal(torch.ones([2], { device: 'cuda' }).sum().item(), 2));
    // So does disposing a graph in the middle of its capture.
    const g3 = new cuda.CUDAGraph();
    native.graphCaptureBegin(g3.handle);
    g3.dispose();
    torch.tidy(() => assert.equal(torch.ones([3], { device: 'cuda' }).sum().item(), 3));
  } finally {
    out?.dispose();
    graph.dispose();
    graph.dispose();
    x.dispose();
  }
});

test('GPU: pinned host memory, and a non-blocking copy from it, give the same tensor on the device', gpu, () => {
  torch.tidy(() => {
    const host = torch.arange(0, 4096, 1, { dtype: 'float32' });
    const pinned = host.pinMemory();
    assert.equal(pinned.isPinned(), true);
    assert.equal(host.isPinned(), false);
    const dev = pinned.to({ device: 'cuda', nonBlocking: true });
    pinned.dispose(); // the host allocator keeps the block until the copy has run
    assert.deepEqual(dev.cpu().toArray(), host.toArray());
    // And the other way: cuda → CPU via the current device also works as before.
    assert.equal(cuda.currentDevice(), 0);
    cuda.withDevice(0, () => assert.equal(cuda.currentDevice(), 0));
  });
});

test('GPU: bad devices and handles are errors, not crashes', gpu, () => {
  assert.throws(() => torch.zeros([2], { device: 'cuda:99' }), TorchError);
  assert.throws(() => cuda.synchronize(99), Error);
  assert.throws(() => cuda.Stream.create(99), TypeError);
  assert.throws(() => native.streamSynchronize(12345), TypeError);
  assert.throws(() => native.graphReplay(12345), TypeError);
  const g = new cuda.CUDAGraph();
  assert.throws(() => g.replay(), Error, 'replay before capture');
  g.dispose();
});

test('no tensors leak from this file', () => {
  assert.equal(torch.liveTensors(), 0);
});
