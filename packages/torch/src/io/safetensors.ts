// The safetensors format (https://github.com/huggingface/safetensors):
//
//   u64 little-endian N | N bytes of UTF-8 JSON header | data section
//
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
// (offsets relative to the data section) plus an optional "__metadata__" map of
// strings. Writing streams one tensor at a time into an AtomicFile (a
// temporary renamed over the destination); reading validates the header as strictly as
// the reference implementation (no holes, no overlaps, exact sizes).
import { closeSync, fstatSync, openSync } from 'node:fs';

import type { Device } from '../device.js';
import { elementSize, type DType } from '../dtype.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { AtomicFile } from './atomic.js';
import { CheckpointError, describeError } from './errors.js';
import { CHUNK_BYTES, readAt, Scratch, tensorFromReader, writeAll } from './file.js';

/** The safetensors dtype codes this library reads and writes. */
export type SafetensorsDType = 'F32' | 'F64' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const TO_ST: Record<DType, SafetensorsDType> = {
  float32: 'F32',
  float64: 'F64',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

/** The reference writer sorts by dtype, descending in its enum order: I64, F64, F32, I32, BF16, ... */
const WRITE_RANK: Record<DType, number> = {
  int64: 0,
  float64: 1,
  float32: 2,
  int32: 3,
  bfloat16: 4,
  float16: 5,
  int16: 6,
  int8: 7,
  uint8: 8,
  bool: 9,
};

const FROM_ST = new Map<string, DType>(Object.entries(TO_ST).map(([k, v]) => [v, k as DType]));

/** Valid safetensors dtypes that @epg/torch has no dtype for. */
const KNOWN_UNSUPPORTED = new Set([
  'U16',
  'U32',
  'U64',
  'F8_E4M3',
  'F8_E5M2',
  'F8_E8M0',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'C64',
]);

/** The reference implementation refuses headers above 100 MB. */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor as described by a safetensors header. */
export interface SafetensorsTensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** The "__metadata__" strings (empty when absent). */
  metadata: Record<string, string>;
  /** Tensors in data order. */
  tensors: SafetensorsTensorInfo[];
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
  /** Length of the data section in bytes. */
  dataLength: number;
}

export interface LoadOptions {
  /** Where the tensors go ('cpu' by default); CUDA tensors are filled chunk by chunk. */
  device?: Device;
  /** Load only these tensors (an unknown name is an error). */
  names?: readonly string[];
}

// ------------------------------------------------------------------ reading

/** obj[key] = value, also for keys like "__proto__". */
function define(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function parseHeader(file: string, fd: number): SafetensorsHeader {
  const size = fstatSync(fd).size;
  const fail = (problem: string): never => {
    throw new CheckpointError(file, `invalid safetensors file: ${problem}`);
  };
  if (size < 8) fail(`file is ${size} bytes, shorter than the 8-byte header length`);
  const lenBuf = new Uint8Array(8);
  readAt(fd, lenBuf, 0);
  const n64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES))
    fail(`header length ${n64} is larger than the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  const n = Number(n64);
  if (8 + n > size) fail(`header length ${n} runs past the end of the ${size}-byte file (truncated?)`);
  if (n < 2) fail(`header length ${n} is too small for a JSON object`);
  const raw = new Uint8Array(n);
  readAt(fd, raw, 8);
  if (raw[0] !== 0x7b) fail('header does not start with "{" (not a safetensors file?)');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${describeError(e)})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return fail('header is not a JSON object');

  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value === null || typeof value !== 'object' || Array.isArray(value))
        fail('"__metadata__" is not an object of strings');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`"__metadata__" value of ${JSON.stringify(k)} is not a string`);
        define(metadata, k, v);
      }
      continue;
    }
    const what = `tensor ${JSON.stringify(name)}`;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail(`${what} is not an object`);
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info.dtype !== 'string') return fail(`${what} has no dtype string`);
    const dtype = FROM_ST.get(info.dtype);
    if (dtype === undefined) {
      if (KNOWN_UNSUPPORTED.has(info.dtype))
        return fail(`${what} has dtype ${info.dtype}, which @epg/torch does not support`);
      return fail(`${what} has unknown dtype ${JSON.stringify(info.dtype)}`);
    }
    if (!Array.isArray(info.shape)) return fail(`${what} has no shape array`);
    const shape = info.shape as unknown[];
    for (const s of shape)
      if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0)
        return fail(`${what} has invalid shape ${JSON.stringify(shape)} (sizes must be non-negative integers)`);
    const offs = info.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
    )
      return fail(`${what} has invalid data_offsets ${JSON.stringify(offs)} (expected [begin, end])`);
    const [begin, end] = offs as [number, number];
    let numel = 1;
    for (const s of shape as number[]) numel *= s;
    const nbytes = numel * elementSize(dtype);
    if (!Number.isSafeInteger(nbytes)) return fail(`${what} has a shape too large to address`);
    if (end < begin) return fail(`${what} has data_offsets [${begin}, ${end}] with end before begin`);
    if (end - begin !== nbytes)
      return fail(
        `${what} has data_offsets [${begin}, ${end}] (${end - begin} bytes) but shape ` +
          `[${shape.join(', ')}] of ${info.dtype} needs ${nbytes} bytes`,
      );
    tensors.push({ name, dtype, shape: shape as number[], dataOffsets: [begin, end] });
  }
  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  const dataStart = 8 + n;
  const dataLength = size - dataStart;
  let covered = 0;
  for (const t of tensors) {
    const [begin, end] = t.dataOffsets;
    if (begin < covered) {
      const prev = tensors.find((u) => u !== t && u.dataOffsets[1] > begin && u.dataOffsets[0] < end);
      return fail(
        `tensor ${JSON.stringify(t.name)} data_offsets [${begin}, ${end}] overlap` +
          (prev ? ` tensor ${JSON.stringify(prev.name)} [${prev.dataOffsets.join(', ')}]` : ' another tensor'),
      );
    }
    if (begin > covered)
      return fail(`bytes [${covered}, ${begin}) of the data section belong to no tensor (a hole before ${t.name})`);
    if (end > dataLength)
      return fail(
        `tensor ${JSON.stringify(t.name)} data_offsets [${begin}, ${end}] run past the end of the ` +
          `${dataLength}-byte data section (file truncated?)`,
      );
    covered = end;
  }
  if (covered !== dataLength)
    return fail(`data section is ${dataLength} bytes but the tensors cover ${covered} (trailing bytes)`);
  return { metadata, tensors, dataStart, dataLength };
}

function openRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${describeError(e)}`, { cause: e });
  }
}

/** The metadata and tensor descriptions of a safetensors file, without reading any tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openRead(path);
  try {
    return parseHeader(path, fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * A safetensors file opened for lazy reading: the header is parsed once and
 * get() reads one tensor at a time. Close it (or use `using`).
 */
export class SafetensorsFile {
  readonly path: string;
  readonly header: SafetensorsHeader;
  #fd: number;
  #byName: Map<string, SafetensorsTensorInfo>;
  #scratch = new Scratch();

  private constructor(path: string, fd: number, header: SafetensorsHeader) {
    this.path = path;
    this.#fd = fd;
    this.header = header;
    this.#byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  static open(path: string): SafetensorsFile {
    const fd = openRead(path);
    try {
      return new SafetensorsFile(path, fd, parseHeader(path, fd));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  /** Tensor names, in data order. */
  list(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.#byName.get(name);
    if (info === undefined) throw new CheckpointError(this.path, `no tensor named ${JSON.stringify(name)}`);
    return info;
  }

  /** Reads one tensor (a new tensor the caller owns). */
  get(name: string, opts: { device?: Device } = {}): Tensor {
    const info = this.info(name);
    if (this.#fd < 0) throw new CheckpointError(this.path, 'file is closed');
    const fd = this.#fd;
    const base = this.header.dataStart + info.dataOffsets[0];
    return tensorFromReader(
      info.dtype,
      info.shape,
      (offset, dest) => {
        const got = readAt(fd, dest, base + offset);
        if (got !== dest.length)
          throw new CheckpointError(this.path, `file truncated while reading tensor ${JSON.stringify(name)}`);
      },
      opts.device,
      this.#scratch,
    );
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Loads tensors of a safetensors file (all, or opts.names) into a Map in data order. */
export function loadSafetensors(path: string, opts: LoadOptions = {}): Map<string, Tensor> {
  const file = SafetensorsFile.open(path);
  const out = new Map<string, Tensor>();
  try {
    const names = opts.names ?? file.list();
    for (const name of names) file.info(name);
    for (const name of names) if (!out.has(name)) out.set(name, file.get(name, { device: opts.device }));
    return out;
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  } finally {
    file.close();
  }
}

// ------------------------------------------------------------------ writing

interface Planned {
  name: string;
  tensor: Tensor;
  dtype: DType;
  shape: number[];
  bytes: number;
}

function plan(path: string, tensors: Record<string, Tensor> | Map<string, Tensor>): Planned[] {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const planned: Planned[] = [];
  for (const [name, tensor] of entries) {
    if (name === '__metadata__') throw new CheckpointError(path, 'a tensor cannot be named "__metadata__"');
    if (!(tensor instanceof Tensor))
      throw new CheckpointError(path, `value of ${JSON.stringify(name)} is not a Tensor`);
    let dtype: DType;
    let shape: number[];
    try {
      dtype = tensor.dtype;
      shape = tensor.shape;
    } catch (e) {
      throw new CheckpointError(path, `cannot save tensor ${JSON.stringify(name)}: ${describeError(e)}`, { cause: e });
    }
    const bytes = shape.reduce((a, b) => a * b, 1) * elementSize(dtype);
    planned.push({ name, tensor, dtype, shape, bytes });
  }
  // The reference writer's order (larger elements first keeps every tensor aligned), then by
  // name as UTF-8 bytes: the same tensors and metadata give the same file.
  planned.sort(
    (a, b) => WRITE_RANK[a.dtype] - WRITE_RANK[b.dtype] || Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)),
  );
  return planned;
}

function encodeHeader(planned: Planned[], metadata: Record<string, string> | undefined): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const p of planned) {
    define(header, p.name, { dtype: TO_ST[p.dtype], shape: p.shape, data_offsets: [offset, offset + p.bytes] });
    offset += p.bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** Writes one tensor's bytes (contiguous, on the CPU), at most CHUNK_BYTES copied at a time. */
function writeTensor(fd: number, p: Planned): void {
  if (p.bytes === 0) return;
  if (p.bytes <= CHUNK_BYTES) {
    writeChecked(fd, p, native.toBuffer(p.tensor.id));
    return;
  }
  const flat = p.tensor.reshape(-1); // a copy only when the tensor is not contiguous
  try {
    const numel = p.bytes / elementSize(p.dtype);
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / elementSize(p.dtype)));
    for (let start = 0; start < numel; start += perChunk) {
      const piece = flat.narrow(0, start, Math.min(perChunk, numel - start));
      try {
        writeAll(fd, new Uint8Array(native.toBuffer(piece.id)));
      } finally {
        piece.dispose();
      }
    }
  } finally {
    flat.dispose();
  }
}

function writeChecked(fd: number, p: Planned, buffer: ArrayBuffer): void {
  if (buffer.byteLength !== p.bytes) throw new Error(`tensor ${JSON.stringify(p.name)} changed size while being saved`);
  writeAll(fd, new Uint8Array(buffer));
}

/**
 * Saves tensors as a safetensors file, atomically: the data goes to a
 * temporary file in the same directory, which is fsynced and renamed over
 * path (then the directory is fsynced). On any error the temporary file is
 * removed and an existing file at path is left as it was. Tensors are written
 * one at a time (CUDA ones copied to the host one at a time, in chunks for
 * large ones); non-contiguous tensors are written in row-major order.
 */
export function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor> | Map<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  if (metadata !== undefined)
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string')
        throw new CheckpointError(path, `metadata value of ${JSON.stringify(k)} is not a string`);
  const planned = plan(path, tensors);
  const header = encodeHeader(planned, metadata);
  let file: AtomicFile | undefined;
  try {
    file = new AtomicFile(path);
    file.write(header);
    for (const p of planned) {
      try {
        writeTensor(file.fd, p);
      } catch (e) {
        if (e instanceof CheckpointError) throw e;
        throw new CheckpointError(path, `cannot save tensor ${JSON.stringify(p.name)}: ${describeError(e)}`, {
          cause: e,
        });
      }
    }
    file.commit();
  } catch (e) {
    file?.abort();
    if (file?.renamed)
      throw new CheckpointError(path, `written, but syncing its directory failed: ${describeError(e)}`, { cause: e });
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(path, `cannot write: ${describeError(e)}`, { cause: e });
  }
}
