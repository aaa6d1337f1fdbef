// What a consumer of an exported model needs besides ONNX Runtime, in plain
// TypeScript with no dependencies, so the browser demo (packages/web bundles this
// file) and Node compute the same bytes: seeded N(0, 1) noise and the images →
// RGBA pixels conversion. Float64 arithmetic in a fixed order, rounded to float32
// once at the end, so both JavaScript engines agree bit for bit.

/** mulberry32: a small, well-mixed 32-bit generator; uniform in (0, 1]. */
function uniformSource(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967296;
  };
}

/** count standard-normal float32 values from seed (Box–Muller, both values of each pair used). */
export function seededNoise(seed: number, count: number): Float32Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
  const next = uniformSource(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const theta = 2 * Math.PI * next();
    out[i] = r * Math.cos(theta);
    if (i + 1 < count) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

/**
 * Images [n, C, H, W] in [0, 1] (the exported model's output) → one RGBA strip
 * n·W wide and H high, image i at x = i·W; grayscale is repeated into R, G, B.
 * A value v becomes round(255·v).
 */
export function imagesToRgba(
  images: Float32Array,
  n: number,
  c: number,
  h: number,
  w: number,
): Uint8ClampedArray<ArrayBuffer> {
  if (c !== 1 && c !== 3) throw new RangeError(`images must have 1 or 3 channels, got ${c}`);
  if (images.length !== n * c * h * w) throw new RangeError(`expected ${n * c * h * w} values, got ${images.length}`);
  const width = n * w;
  const rgba = new Uint8ClampedArray(width * h * 4);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const px = (y * width + i * w + x) * 4;
        for (let k = 0; k < 3; k++) {
          const v = images[((i * c + (c === 1 ? 0 : k)) * h + y) * w + x]!;
          rgba[px + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
        }
        rgba[px + 3] = 255;
      }
  return rgba;
}
