// Import of PyTorch checkpoints written by torch.save (the zip format, the
// default since PyTorch 1.6):
//
//   <archive>/data.pkl     the object, pickled; tensors are persistent ids
//                          ('storage', storage type, key, location, numel)
//   <archive>/data/<key>   each storage's raw bytes (stored, not compressed)
//   <archive>/byteorder    'little' (big-endian files are refused)
//
// The pickle is run by a safe unpickler that only knows the globals torch.save
// emits for state dicts and plain checkpoint dicts; anything else (a pickled
// nn.Module, numpy arrays, arbitrary classes) is an error naming the global.
// Tensors are rebuilt from storage + offset + size + stride and returned
// contiguous, each owning its memory.
import { closeSync, openSync } from 'node:fs';

import type { Device } from '../device.js';
import { elementSize, type DType } from '../dtype.js';
import * as aten from '../generated/aten.js';
import type { Tensor } from '../tensor.js';
import { CheckpointError, describeError } from './errors.js';
import { readAt, Scratch, tensorFromReader } from './file.js';
import { PickleError, PyCallable, PyDict, pyTypeName, unpickle } from './pickle.js';
import { ZipReader, type ZipEntry } from './zip.js';

export interface PtLoadOptions {
  /** Where tensors go ('cpu' by default, whatever device they were saved from). */
  device?: Device;
}

export interface StateDictOptions extends PtLoadOptions {
  /**
   * The key (or dotted path) of the state dict inside the checkpoint, e.g.
   * 'model', 'state_dict', 'ema'. Without it the top level is used when it
   * holds only tensors, else the first of 'state_dict', 'model_state_dict',
   * 'model', 'module' that does (and, with skipNonTensors, the top level).
   */
  key?: string;
  /** Skip non-tensor leaves instead of failing on them. */
  skipNonTensors?: boolean;
}

/** A slice object (builtins.slice) found in a checkpoint. */
export interface PySlice {
  start: unknown;
  stop: unknown;
  step: unknown;
}

// --------------------------------------------------------------- the globals

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

const TORCH_DTYPES: Record<string, DType> = {
  float32: 'float32',
  float: 'float32',
  float64: 'float64',
  double: 'float64',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

/** A storage class named in a persistent id (torch.FloatStorage, torch.UntypedStorage, ...). */
class StorageType {
  constructor(
    readonly qualname: string,
    readonly dtype: DType,
  ) {}
}

/** A torch dtype object (torch.float32): converted to its name ('float32'). */
class TorchDType {
  constructor(readonly dtype: DType) {}
}

/** A storage of the archive, found through a persistent id. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: DType,
    readonly numel: number,
    readonly location: string,
  ) {}
}

/** A tensor to build: the as_strided view of a storage. */
class TensorSpec {
  requiresGrad = false;
  constructor(
    readonly storage: StorageRef,
    readonly dtype: DType,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}

  get numel(): number {
    return this.size.reduce((a, b) => a * b, 1);
  }

  /** Row-major contiguous strides (size-1 dimensions may have any stride). */
  get isContiguous(): boolean {
    let expected = 1;
    for (let i = this.size.length - 1; i >= 0; i--) {
      if (this.size[i] !== 1 && this.stride[i] !== expected) return this.numel === 0;
      expected *= this.size[i]!;
    }
    return true;
  }
}

/** Marks a torch class used as an argument (torch.Tensor, torch.nn.Parameter). */
class TorchClass {
  constructor(readonly qualname: string) {}
}

function intList(x: unknown, what: string): number[] {
  if (!Array.isArray(x) || !x.every((v) => typeof v === 'number' && Number.isSafeInteger(v)))
    throw new Error(`${what} is not a tuple of integers`);
  return [...(x as number[])];
}

function rebuildTensor(args: unknown[], dtypeArg?: unknown): TensorSpec {
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!(storage instanceof StorageRef)) throw new Error(`tensor storage is a ${pyTypeName(storage)}, not a storage`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
    throw new Error('tensor storage offset is not a non-negative integer');
  let dtype = storage.dtype;
  if (dtypeArg !== undefined) {
    // v3: the storage is untyped (bytes); size, stride and offset count elements of dtype.
    if (!(dtypeArg instanceof TorchDType)) throw new Error(`tensor dtype is a ${pyTypeName(dtypeArg)}`);
    dtype = dtypeArg.dtype;
  }
  const spec = new TensorSpec(storage, dtype, offset, intList(size, 'tensor size'), intList(stride, 'tensor stride'));
  if (spec.size.length !== spec.stride.length) throw new Error('tensor size and stride have different lengths');
  if (spec.size.some((s) => s < 0) || spec.stride.some((s) => s < 0))
    throw new Error('tensor size or stride is negative');
  spec.requiresGrad = requiresGrad === true;
  return spec;
}

function resolveGlobal(module: string, name: string): unknown {
  const qual = `${module}.${name}`;
  const builtins = module === 'builtins' || module === '__builtin__';
  if (module === 'collections' && name === 'OrderedDict')
    return new PyCallable(qual, (args) => {
      const d = new PyDict();
      const init = args[0];
      if (Array.isArray(init))
        for (const pair of init as unknown[]) {
          if (!Array.isArray(pair) || pair.length !== 2) throw new Error('OrderedDict items are not pairs');
          d.map.set(pair[0], pair[1]);
        }
      else if (init instanceof PyDict) for (const [k, v] of init.map) d.map.set(k, v);
      return d;
    });
  if (builtins && (name === 'set' || name === 'frozenset'))
    return new PyCallable(qual, (args) => new Set(Array.isArray(args[0]) ? (args[0] as unknown[]) : []));
  if (builtins && name === 'slice')
    return new PyCallable(qual, (args): PySlice => {
      if (args.length === 1) return { start: null, stop: args[0], step: null };
      return { start: args[0] ?? null, stop: args[1] ?? null, step: args[2] ?? null };
    });
  if (builtins && (name === 'bytes' || name === 'bytearray'))
    return new PyCallable(qual, (args) => {
      const a = args[0];
      if (a === undefined) return new Uint8Array(0);
      if (a instanceof Uint8Array) return a.slice();
      if (Array.isArray(a)) return Uint8Array.from(a as number[]);
      if (typeof a === 'string' && (args[1] === 'latin1' || args[1] === 'latin-1'))
        return Uint8Array.from(a, (c) => c.charCodeAt(0) & 0xff);
      throw new Error(`${qual} of ${pyTypeName(a)} is not supported`);
    });
  if (module === '_codecs' && name === 'encode')
    // How protocol 2 pickles bytes: _codecs.encode(text, 'latin1').
    return new PyCallable(qual, (args) => {
      const [text, encoding] = args;
      if (typeof text !== 'string') throw new Error('_codecs.encode of a non-string');
      if (encoding === 'latin1' || encoding === 'latin-1' || encoding === 'iso-8859-1')
        return Uint8Array.from(text, (c) => {
          const code = c.charCodeAt(0);
          if (code > 0xff) throw new Error('_codecs.encode: character outside latin1');
          return code;
        });
      if (encoding === 'utf-8' || encoding === 'utf8') return new TextEncoder().encode(text);
      throw new Error(`_codecs.encode with encoding ${JSON.stringify(encoding)} is not supported`);
    });
  if (module === 'torch._utils') {
    if (name === '_rebuild_tensor_v2') return new PyCallable(qual, (args) => rebuildTensor(args));
    if (name === '_rebuild_tensor_v3') return new PyCallable(qual, (args) => rebuildTensor(args, args[6]));
    if (name === '_rebuild_parameter' || name === '_rebuild_parameter_with_state')
      return new PyCallable(qual, (args) => {
        const [data, requiresGrad] = args;
        if (!(data instanceof TensorSpec)) throw new Error(`${qual} of a ${pyTypeName(data)}`);
        data.requiresGrad = requiresGrad === true;
        return data;
      });
  }
  if (module === 'torch._tensor' && name === '_rebuild_from_type_v2')
    return new PyCallable(qual, (args) => {
      const [func, cls, fargs] = args;
      if (!(cls instanceof TorchClass)) throw new Error(`${qual} for class ${pyTypeName(cls)} is not supported`);
      if (!(func instanceof PyCallable) || func.call === undefined || !Array.isArray(fargs))
        throw new Error(`${qual} with an unsupported rebuild function`);
      return func.call(fargs as unknown[]);
    });
  if ((module === 'torch' && name === 'Tensor') || (module === 'torch.nn.parameter' && name === 'Parameter'))
    return new TorchClass(qual);
  if (module === 'torch' || module === 'torch.storage') {
    const st = STORAGE_DTYPES[name];
    if (module === 'torch' && st !== undefined) return new StorageType(qual, st);
    if (name === 'UntypedStorage') return new StorageType(qual, 'uint8');
  }
  if (module === 'torch') {
    const dt = TORCH_DTYPES[name];
    if (dt !== undefined) return new TorchDType(dt);
    if (name === 'device')
      return new PyCallable(qual, (args) => {
        const [type, index] = args;
        if (typeof type !== 'string') throw new Error('torch.device of a non-string');
        return typeof index === 'number' ? `${type}:${index}` : type;
      });
    if (name === 'Size') return new PyCallable(qual, (args) => [...intList(args[0] ?? [], 'torch.Size')]);
    if (name.endsWith('Storage')) throw new Error(`storage type ${qual} has a dtype that @epg/torch does not support`);
  }
  const hint = module.startsWith('__torch__')
    ? ' (this is a TorchScript archive: load it with jit.load)'
    : module.startsWith('numpy')
      ? ' (numpy objects are not supported: save tensors or Python numbers instead)'
      : '';
  throw new Error(
    `global ${qual} is not allowed: only tensors and plain containers (dict, list, tuple, ` +
      `numbers, strings) can be loaded, and nothing is executed${hint}`,
  );
}

// --------------------------------------------------------------- the archive

/** The checkpoint's unpickled object (tensors still as specs), with its archive. */
interface Unpickled {
  zip: ZipReader;
  prefix: string;
  root: unknown;
}

function sniff(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${describeError(e)}`, { cause: e });
  }
  const head = new Uint8Array(512);
  let n: number;
  try {
    n = readAt(fd, head, 0);
  } finally {
    closeSync(fd);
  }
  if (n >= 4 && head[0] === 0x50 && head[1] === 0x4b) return; // 'PK': a zip (checked further by ZipReader)
  const legacy =
    'legacy (pre-1.6, non-zip) torch.save format is not supported: re-save it with ' +
    'torch.save(obj, path, _use_new_zipfile_serialization=True)';
  if (n >= 2 && head[0] === 0x80 && head[1]! <= 5) throw new CheckpointError(path, legacy);
  if (n >= 262 && new TextDecoder('latin1').decode(head.subarray(257, 262)) === 'ustar')
    throw new CheckpointError(path, legacy);
  throw new CheckpointError(
    path,
    n === 0
      ? 'empty file, not a PyTorch checkpoint'
      : 'not a PyTorch checkpoint (not a zip file written by torch.save)',
  );
}

function openCheckpoint(path: string): Unpickled {
  sniff(path);
  const zip = ZipReader.open(path);
  try {
    const pkl =
      zip.entries().find((e) => /^[^/]+\/data\.pkl$/.test(e.name)) ?? zip.entries().find((e) => e.name === 'data.pkl');
    if (pkl === undefined) {
      const script = zip.entries().some((e) => /(^|\/)constants\.pkl$/.test(e.name) || /(^|\/)code\//.test(e.name));
      throw new CheckpointError(
        path,
        script
          ? 'this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint: load it with jit.load'
          : 'zip file is not a torch.save checkpoint (no <archive>/data.pkl)',
      );
    }
    const prefix = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
    const byteorder = `${prefix}byteorder`;
    if (zip.has(byteorder)) {
      const order = zip.read(byteorder).toString('latin1').trim();
      if (order !== 'little')
        throw new CheckpointError(path, `storages are ${order}-endian; only little-endian checkpoints are supported`);
    }
    const storages = new Map<string, StorageRef>();
    const persistentLoad = (pid: unknown): unknown => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 5)
        throw new Error(`unsupported persistent id ${describePid(pid)}`);
      const [, type, key, location, numel] = pid as unknown[];
      if (typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0)
        throw new Error(`malformed storage persistent id ${describePid(pid)}`);
      const dtype = type instanceof StorageType ? type.dtype : type instanceof TorchDType ? type.dtype : undefined;
      if (dtype === undefined) throw new Error(`storage ${key} has an unsupported type ${pyTypeName(type)}`);
      const cached = storages.get(key);
      if (cached !== undefined) return cached;
      const ref = new StorageRef(key, dtype, numel, String(location));
      storages.set(key, ref);
      return ref;
    };
    let root: unknown;
    try {
      root = unpickle(zip.read(pkl), { resolveGlobal, persistentLoad });
    } catch (e) {
      if (e instanceof PickleError || !(e instanceof CheckpointError))
        throw new CheckpointError(path, `cannot unpickle ${pkl.name}: ${describeError(e)}`, { cause: e });
      throw e;
    }
    return { zip, prefix, root };
  } catch (e) {
    zip.close();
    throw e;
  }
}

function describePid(pid: unknown): string {
  if (!Array.isArray(pid)) return pyTypeName(pid);
  return `(${(pid as unknown[]).map((x) => (typeof x === 'string' ? JSON.stringify(x) : pyTypeName(x))).join(', ')})`;
}

/** Every tensor spec reachable from root (bare storages become 1-d specs). */
function collectSpecs(root: unknown, bare: Map<StorageRef, TensorSpec>): TensorSpec[] {
  const out = new Set<TensorSpec>();
  const seen = new Set<unknown>();
  const walk = (x: unknown): void => {
    if (x === null || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    if (x instanceof TensorSpec) out.add(x);
    else if (x instanceof StorageRef) out.add(bareSpec(x, bare));
    else if (x instanceof PyDict) for (const v of x.map.values()) walk(v);
    else if (Array.isArray(x) || x instanceof Set) for (const v of x) walk(v);
  };
  walk(root);
  return [...out];
}

function bareSpec(ref: StorageRef, bare: Map<StorageRef, TensorSpec>): TensorSpec {
  let spec = bare.get(ref);
  if (spec === undefined) {
    spec = new TensorSpec(ref, ref.dtype, 0, [ref.numel], [1]);
    bare.set(ref, spec);
  }
  return spec;
}

/**
 * Builds the tensors of specs, storage by storage, on device. The only tensor
 * of a storage, when contiguous, is read straight from its byte range; any
 * other storage is read once, whole, and each tensor is copied out of it
 * (as_strided, then a contiguous copy), so every result owns its memory.
 */
function materialize(
  path: string,
  u: Unpickled,
  specs: TensorSpec[],
  device: Device | undefined,
): Map<TensorSpec, Tensor> {
  const out = new Map<TensorSpec, Tensor>();
  const scratch = new Scratch();
  const byStorage = new Map<StorageRef, TensorSpec[]>();
  for (const s of new Set(specs)) {
    const list = byStorage.get(s.storage);
    if (list === undefined) byStorage.set(s.storage, [s]);
    else list.push(s);
  }
  try {
    for (const [storage, users] of byStorage) {
      const name = `${u.prefix}data/${storage.key}`;
      if (!u.zip.has(name)) throw new CheckpointError(path, `storage ${storage.key} is missing (no zip entry ${name})`);
      const entry = u.zip.entry(name);
      const storageBytes = storage.numel * elementSize(storage.dtype);
      if (entry.size < storageBytes)
        throw new CheckpointError(
          path,
          `storage ${storage.key} has ${entry.size} bytes, its persistent id says ${storageBytes} (corrupt checkpoint)`,
        );
      const reader = rangeReader(u.zip, entry);
      for (const s of users) {
        const esize = elementSize(s.dtype);
        let extent = s.offset + 1;
        for (let i = 0; i < s.size.length; i++) extent += (s.size[i]! - 1) * s.stride[i]!;
        if (s.numel > 0 && extent * esize > storageBytes)
          throw new CheckpointError(
            path,
            `a tensor of size [${s.size.join(', ')}], stride [${s.stride.join(', ')}], offset ${s.offset} ` +
              `reaches past the end of storage ${storage.key} (${storageBytes} bytes)`,
          );
      }
      // A storage of one contiguous tensor is read straight into it (just its bytes); a
      // shared or strided one is read once, whole, and every tensor is copied out of it.
      const direct = users.length === 1 && users[0]!.isContiguous ? users : [];
      const strided = direct.length > 0 ? [] : users;
      for (const s of direct) {
        const base = s.offset * elementSize(s.dtype);
        out.set(
          s,
          tensorFromReader(s.dtype, s.size, (off, dest) => reader(base + off, dest), device, scratch),
        );
      }
      if (strided.length > 0) {
        const esize = elementSize(strided[0]!.dtype);
        const sameType = strided.every((s) => s.dtype === strided[0]!.dtype);
        if (!sameType || storageBytes % esize !== 0)
          throw new CheckpointError(path, `storage ${storage.key} is viewed with different dtypes`);
        const whole = tensorFromReader(strided[0]!.dtype, [storageBytes / esize], reader, device, scratch);
        try {
          for (const s of strided) {
            const view = aten.as_strided(whole, s.size, s.stride, s.offset);
            try {
              out.set(s, view.isContiguous() ? view.clone() : view.contiguous());
            } finally {
              view.dispose();
            }
          }
        } finally {
          whole.dispose();
        }
      }
    }
    for (const [s, t] of out)
      if (s.requiresGrad && (s.dtype.startsWith('float') || s.dtype === 'bfloat16')) t.requiresGrad_(true);
    return out;
  } catch (e) {
    for (const t of out.values()) t.dispose();
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(path, `cannot rebuild tensors: ${describeError(e)}`, { cause: e });
  }
}

function rangeReader(zip: ZipReader, entry: ZipEntry): (offset: number, dest: Uint8Array) => void {
  if (entry.method === 0) return (offset, dest) => zip.readRangeInto(entry, offset, dest);
  let bytes: Buffer | undefined;
  return (offset, dest) => {
    bytes ??= zip.read(entry);
    dest.set(bytes.subarray(offset, offset + dest.length));
  };
}

/** Converts unpickled values to JS values, tensors taken from built. */
function toJs(root: unknown, built: Map<TensorSpec, Tensor>, bare: Map<StorageRef, TensorSpec>): unknown {
  const memo = new Map<unknown, unknown>();
  const conv = (x: unknown): unknown => {
    if (x === null || typeof x !== 'object') return x;
    const done = memo.get(x);
    if (done !== undefined) return done;
    if (x instanceof TensorSpec) return built.get(x);
    if (x instanceof StorageRef) return built.get(bareSpec(x, bare));
    if (x instanceof TorchDType) return x.dtype;
    if (x instanceof Uint8Array) return x;
    if (Array.isArray(x)) {
      const arr: unknown[] = [];
      memo.set(x, arr);
      for (const v of x) arr.push(conv(v));
      return arr;
    }
    if (x instanceof Set) {
      const s = new Set<unknown>();
      memo.set(x, s);
      for (const v of x) s.add(conv(v));
      return s;
    }
    if (x instanceof PyDict) {
      if ([...x.map.keys()].every((k) => typeof k === 'string')) {
        const obj: Record<string, unknown> = {};
        memo.set(x, obj);
        for (const [k, v] of x.map)
          Object.defineProperty(obj, k as string, {
            value: conv(v),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        return obj;
      }
      const m = new Map<unknown, unknown>();
      memo.set(x, m);
      for (const [k, v] of x.map) m.set(conv(k), conv(v));
      return m;
    }
    if (x instanceof PyCallable || x instanceof StorageType || x instanceof TorchClass) return `<${x.qualname}>`;
    return x; // slices (plain objects)
  };
  return conv(root);
}

/**
 * Loads a torch.save checkpoint as JS values: dicts become plain objects when
 * all their keys are strings (in the dict's order) and Maps otherwise; lists
 * and tuples become arrays, sets Sets, bytes Uint8Arrays, ints numbers (bigint
 * beyond 2^53), torch dtypes their names ('float32'), torch.device strings,
 * torch.Size arrays; tensors are contiguous Tensors on opts.device (default
 * 'cpu'), each owning its memory (views of one storage become separate copies).
 */
export function loadPt(path: string, opts: PtLoadOptions = {}): unknown {
  return guarded(path, () => {
    const u = openCheckpoint(path);
    try {
      const bare = new Map<StorageRef, TensorSpec>();
      const built = materialize(path, u, collectSpecs(u.root, bare), opts.device);
      try {
        return toJs(u.root, built, bare);
      } catch (e) {
        for (const t of built.values()) t.dispose();
        throw e;
      }
    } finally {
      u.zip.close();
    }
  });
}

/** Runs fn, turning any failure that is not already a CheckpointError (I/O, too deep nesting) into one. */
function guarded<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(path, `cannot load: ${describeError(e)}`, { cause: e });
  }
}

function isTensorTree(x: unknown): boolean {
  if (!(x instanceof PyDict) || x.map.size === 0) return false;
  let tensors = 0;
  const walk = (d: PyDict): boolean => {
    for (const [k, v] of d.map) {
      if (typeof k !== 'string') return false;
      if (v instanceof TensorSpec) tensors++;
      else if (!(v instanceof PyDict) || !walk(v)) return false;
    }
    return true;
  };
  return walk(x) && tensors > 0;
}

const STATE_DICT_KEYS = ['state_dict', 'model_state_dict', 'model', 'module'];

function topKeys(root: unknown): string {
  if (!(root instanceof PyDict)) return `the checkpoint is a ${pyTypeName(root)}, not a dict`;
  const keys = [...root.map.keys()].map((k) => (typeof k === 'string' ? JSON.stringify(k) : String(k)));
  return `top-level keys: ${keys.slice(0, 20).join(', ')}${keys.length > 20 ? ', ...' : ''}`;
}

function selectStateDict(path: string, root: unknown, key: string | undefined, skipNonTensors: boolean): PyDict {
  if (key !== undefined) {
    let cur: unknown = root;
    if (cur instanceof PyDict && cur.map.has(key)) cur = cur.map.get(key);
    else
      for (const part of key.split('.')) {
        if (!(cur instanceof PyDict) || !cur.map.has(part))
          throw new CheckpointError(path, `no state dict under key ${JSON.stringify(key)} (${topKeys(root)})`);
        cur = cur.map.get(part);
      }
    if (!(cur instanceof PyDict))
      throw new CheckpointError(path, `value under key ${JSON.stringify(key)} is a ${pyTypeName(cur)}, not a dict`);
    return cur;
  }
  if (isTensorTree(root)) return root as PyDict;
  if (root instanceof PyDict) {
    for (const k of STATE_DICT_KEYS) if (isTensorTree(root.map.get(k))) return root.map.get(k) as PyDict;
    if (skipNonTensors) return root;
  }
  throw new CheckpointError(
    path,
    `cannot find a state dict (a dict of tensors) at the top level or under ${STATE_DICT_KEYS.join(', ')}; ` +
      `pass { key } (${topKeys(root)})`,
  );
}

/**
 * Loads the state dict of a torch.save checkpoint as name -> Tensor. Nested
 * dicts are flattened with dotted names ({'enc': {'w': t}} -> 'enc.w'). Only
 * the tensors of the state dict are read from the file.
 */
export function loadStateDict(path: string, opts: StateDictOptions = {}): Map<string, Tensor> {
  return guarded(path, () => loadStateDictUnguarded(path, opts));
}

function loadStateDictUnguarded(path: string, opts: StateDictOptions): Map<string, Tensor> {
  const u = openCheckpoint(path);
  try {
    const sd = selectStateDict(path, u.root, opts.key, opts.skipNonTensors === true);
    const flat: [string, TensorSpec][] = [];
    const walk = (d: PyDict, prefix: string): void => {
      for (const [k, v] of d.map) {
        const name = `${prefix}${typeof k === 'string' ? k : String(k)}`;
        if (v instanceof TensorSpec) flat.push([name, v]);
        else if (v instanceof PyDict) walk(v, `${name}.`);
        else if (!opts.skipNonTensors)
          throw new CheckpointError(
            path,
            `state dict entry ${JSON.stringify(name)}${opts.key === undefined ? '' : ` under key ${JSON.stringify(opts.key)}`} ` +
              `is a ${pyTypeName(v)}, not a tensor (pass skipNonTensors to skip it)`,
          );
      }
    };
    walk(sd, '');
    const built = materialize(
      path,
      u,
      flat.map(([, s]) => s),
      opts.device,
    );
    return new Map(flat.map(([name, s]) => [name, built.get(s)!]));
  } finally {
    u.zip.close();
  }
}
