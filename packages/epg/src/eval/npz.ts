// NumPy .npy / .npz files, read and written: the reference statistics and the
// sample batches of the ADM evaluator (spec §8) are .npz archives (a zip of
// .npy members). NPY format versions 1 and 2, C order, little-endian, the
// dtypes below. Reading goes through @epg/torch's ZipReader (stored members are
// read in place, also by row range, so a 10 GB `arr_0` need not fit in memory;
// deflated members from np.savez_compressed are inflated whole). Writing makes
// stored (uncompressed) members, ZIP64 where needed, streamed to an
// AtomicFile (a temporary renamed into place when complete).
import { writeSync } from 'node:fs';

import * as torch from '@epg/torch';
import type { DType, Tensor } from '@epg/torch';
import { crc32 } from '@epg/torch/io/crc32';

/** An .npz / .npy file that cannot be read or written; names the file and the problem. */
export class NpzError extends Error {
  override name = 'NpzError';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

/** NPY type strings we read and write, with their torch dtype. */
const DESCR_TO_DTYPE: Record<string, DType> = {
  '<f2': 'float16',
  '<f4': 'float32',
  '<f8': 'float64',
  '|u1': 'uint8',
  '<u1': 'uint8',
  '|i1': 'int8',
  '<i1': 'int8',
  '<i2': 'int16',
  '<i4': 'int32',
  '<i8': 'int64',
  '|b1': 'bool',
};

const DTYPE_TO_DESCR: Partial<Record<DType, string>> = {
  float16: '<f2',
  float32: '<f4',
  float64: '<f8',
  uint8: '|u1',
  int8: '|i1',
  int16: '<i2',
  int32: '<i4',
  int64: '<i8',
  bool: '|b1',
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ARRAY_ALIGN = 64; // numpy >= 1.14 pads headers to 64 bytes

/** The header of one .npy array. */
export interface NpyHeader {
  /** NumPy's type string, e.g. '<f8'. */
  descr: string;
  dtype: DType;
  shape: number[];
  /** Bytes from the start of the .npy data to the first element. */
  headerBytes: number;
  /** Bytes of element data. */
  dataBytes: number;
  /** Column-major data (np.asfortranarray): read() transposes it to C order. */
  fortranOrder: boolean;
}

function elementBytes(dtype: DType): number {
  return torch.elementSize(dtype);
}

/** Parses an .npy header from the first bytes of the member (at least the whole header). */
export function parseNpyHeader(bytes: Uint8Array, file: string): NpyHeader {
  const fail = (p: string): never => {
    throw new NpzError(file, p);
  };
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail('not an .npy array (bad magic)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let len: number;
  let start: number;
  if (major === 1) {
    len = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail('truncated .npy header');
    len = view.getUint32(8, true);
    start = 12;
  } else {
    return fail(`unsupported .npy format version ${major}.${bytes[7]}`);
  }
  if (bytes.length < start + len) fail('truncated .npy header');
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + len));
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    fail(`cannot parse the .npy header ${JSON.stringify(text.trim())}`);
  const dtype = DESCR_TO_DTYPE[descr!];
  if (dtype === undefined)
    fail(`dtype '${descr}' is not supported (supported: ${Object.keys(DESCR_TO_DTYPE).join(' ')}; big-endian is not)`);
  const shape = shapeText!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const n = Number(s.replace(/L$/, ''));
      if (!Number.isSafeInteger(n) || n < 0) fail(`bad dimension '${s}' in the .npy shape`);
      return n;
    });
  const count = shape.reduce((a, b) => a * b, 1);
  return {
    descr: descr!,
    dtype: dtype!,
    shape,
    headerBytes: start + len,
    dataBytes: count * elementBytes(dtype!),
    fortranOrder: fortran === 'True',
  };
}

/** An .npy header (magic, version, padded dict) for an array of dtype and shape, as numpy writes it. */
export function formatNpyHeader(dtype: DType, shape: readonly number[]): Uint8Array {
  const descr = DTYPE_TO_DESCR[dtype];
  if (descr === undefined) throw new TypeError(`npy: dtype ${dtype} cannot be written`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Version 1 has a 2-byte header length; numpy moves to version 2 past 65535.
  const v1 = dict.length + 1 + 10 < 65536;
  const prefix = v1 ? 10 : 12;
  const pad = (ARRAY_ALIGN - ((prefix + dict.length + 1) % ARRAY_ALIGN)) % ARRAY_ALIGN;
  dict = dict + ' '.repeat(pad) + '\n';
  const out = new Uint8Array(prefix + dict.length);
  out.set(MAGIC, 0);
  out[6] = v1 ? 1 : 2;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (v1) view.setUint16(8, dict.length, true);
  else view.setUint32(8, dict.length, true);
  for (let i = 0; i < dict.length; i++) out[prefix + i] = dict.charCodeAt(i);
  return out;
}

function tensorFromBytes(bytes: Uint8Array, dtype: DType, shape: readonly number[]): Tensor {
  // Copy into a fresh, aligned buffer that the tensor then owns (zero-copy view).
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  const n = bytes.length / elementBytes(dtype);
  const buf = aligned.buffer;
  switch (dtype) {
    case 'float32':
      return torch.fromTypedArray(new Float32Array(buf, 0, n), shape, { copy: false });
    case 'float64':
      return torch.fromTypedArray(new Float64Array(buf, 0, n), shape, { copy: false });
    case 'float16':
      return torch.fromTypedArray(new Uint16Array(buf, 0, n), shape, { dtype: 'float16', copy: false });
    case 'uint8':
      return torch.fromTypedArray(aligned, shape, { copy: false });
    case 'bool':
      return torch.fromTypedArray(aligned, shape, { dtype: 'bool', copy: false });
    case 'int8':
      return torch.fromTypedArray(new Int8Array(buf, 0, n), shape, { copy: false });
    case 'int16':
      return torch.fromTypedArray(new Int16Array(buf, 0, n), shape, { copy: false });
    case 'int32':
      return torch.fromTypedArray(new Int32Array(buf, 0, n), shape, { copy: false });
    case 'int64':
      return torch.fromTypedArray(new BigInt64Array(buf, 0, n), shape, { copy: false });
    default:
      throw new TypeError(`npy: dtype ${dtype} cannot be read`);
  }
}

/** The raw bytes of a tensor's elements, C order. */
export function tensorBytes(t: Tensor): Uint8Array {
  const a = torch.tidy(() => t.contiguous().cpu().toTypedArray());
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** An .npz archive opened for reading; close() it (or use `using`). */
export class NpzReader implements Disposable {
  readonly path: string;
  #zip: torch.io.ZipReader;
  #headers = new Map<string, NpyHeader>();

  constructor(path: string) {
    this.path = path;
    try {
      this.#zip = torch.io.ZipReader.open(path);
    } catch (e) {
      throw new NpzError(path, `cannot open as .npz: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Array names (member names without '.npy'), in archive order. */
  keys(): string[] {
    return this.#zip
      .entries()
      .filter((e) => !e.isDirectory && e.name.endsWith('.npy'))
      .map((e) => e.name.slice(0, -4));
  }

  has(key: string): boolean {
    return this.#zip.has(`${key}.npy`);
  }

  #entry(key: string): torch.io.ZipEntry {
    if (!this.has(key))
      throw new NpzError(this.path, `has no array '${key}' (it has: ${this.keys().join(', ') || 'none'})`);
    return this.#zip.entry(`${key}.npy`);
  }

  /** The header of an array (reads only the header for a stored member). */
  header(key: string): NpyHeader {
    const cached = this.#headers.get(key);
    if (cached !== undefined) return cached;
    const entry = this.#entry(key);
    let head: Uint8Array;
    if (entry.method === 0) {
      head = this.#zip.readRange(entry, 0, Math.min(entry.size, 4096));
      if (head.length >= 12 && head[6] !== 1) {
        const need = 12 + new DataView(head.buffer, head.byteOffset).getUint32(8, true);
        if (need > head.length) head = this.#zip.readRange(entry, 0, Math.min(entry.size, need));
      }
    } else {
      head = this.#zip.read(entry);
    }
    const h = parseNpyHeader(head, `${this.path} [${key}]`);
    if (h.headerBytes + h.dataBytes !== entry.size)
      throw new NpzError(
        this.path,
        `array '${key}': header says ${h.dataBytes} data bytes, the member holds ${entry.size - h.headerBytes}`,
      );
    this.#headers.set(key, h);
    return h;
  }

  /** A whole array as a CPU tensor. */
  read(key: string): Tensor {
    const h = this.header(key);
    const entry = this.#entry(key);
    const bytes =
      entry.method === 0
        ? this.#zip.readRange(entry, h.headerBytes, h.dataBytes)
        : this.#zip.read(entry).subarray(h.headerBytes);
    if (!h.fortranOrder) return tensorFromBytes(bytes, h.dtype, h.shape);
    // Column-major: the bytes are the C-order array of the reversed shape, transposed.
    return torch.tidy(() => {
      const rev = tensorFromBytes(bytes, h.dtype, [...h.shape].reverse());
      return rev.permute(h.shape.map((_, i) => h.shape.length - 1 - i)).contiguous();
    });
  }

  /** Rows [start, start + count) along the first dimension (in place for stored members). */
  readRows(key: string, start: number, count: number): Tensor {
    const h = this.header(key);
    if (h.shape.length === 0) throw new NpzError(this.path, `array '${key}' is a scalar`);
    const rows = h.shape[0]!;
    if (start < 0 || count < 0 || start + count > rows)
      throw new RangeError(`${this.path}: rows [${start}, ${start + count}) of '${key}', which has ${rows}`);
    if (h.fortranOrder) return torch.tidy(() => this.read(key).narrow(0, start, count).contiguous());
    const rowBytes = rows === 0 ? 0 : h.dataBytes / rows;
    const entry = this.#entry(key);
    const bytes =
      entry.method === 0
        ? this.#zip.readRange(entry, h.headerBytes + start * rowBytes, count * rowBytes)
        : this.#zip.read(entry).subarray(h.headerBytes + start * rowBytes, h.headerBytes + (start + count) * rowBytes);
    return tensorFromBytes(bytes, h.dtype, [count, ...h.shape.slice(1)]);
  }

  close(): void {
    this.#zip.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads the named arrays (all by default) of an .npz file as CPU tensors. */
export function loadNpz(path: string, keys?: readonly string[]): Record<string, Tensor> {
  using r = new NpzReader(path);
  const out: Record<string, Tensor> = {};
  for (const k of keys ?? r.keys()) out[k] = r.read(k);
  return out;
}

// ---------------------------------------------------------------------------
// Writing: a streaming zip writer of stored members.

const U32_MAX = 0xffffffff;
/** Sizes and offsets from which ZIP64 records are used (lowered by tests). */
let zip64Limit = U32_MAX;

/** @internal Tests lower the ZIP64 threshold to exercise those records on small files; returns the old one. */
export function setZip64LimitForTesting(bytes: number): number {
  const old = zip64Limit;
  zip64Limit = bytes;
  return old;
}

interface WrittenEntry {
  name: Uint8Array;
  crc: number;
  size: number;
  offset: number;
  zip64: boolean;
}

/**
 * Writes an .npz: arrays are added whole (add) or streamed (begin → write… →
 * end), each as a stored .npy member. Nothing is visible at `path` until
 * close() succeeds; abort() (or an error) removes the partial file.
 */
export class NpzWriter implements Disposable {
  readonly path: string;
  readonly #file: torch.io.AtomicFile;
  #fd: number;
  #pos = 0;
  #entries: WrittenEntry[] = [];
  #open: { entry: WrittenEntry; crcAt: number; remaining: number; key: string } | null = null;

  constructor(path: string) {
    this.path = path;
    try {
      this.#file = new torch.io.AtomicFile(path);
      this.#fd = this.#file.fd;
    } catch (e) {
      throw new NpzError(path, `cannot write: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  #write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length)
      done += writeSync(this.#fd, bytes, done, Math.min(bytes.length - done, 1 << 26), this.#pos + done);
    this.#pos += bytes.length;
  }

  /** Starts a streamed array of dtype and shape; write() its C-order bytes, then end(). */
  begin(key: string, dtype: DType, shape: readonly number[]): void {
    if (this.#fd < 0) throw new NpzError(this.path, 'writer is closed');
    if (this.#open !== null) throw new NpzError(this.path, `array '${this.#open.key}' is still open`);
    if (this.#entries.some((e) => new TextDecoder().decode(e.name) === `${key}.npy`))
      throw new NpzError(this.path, `array '${key}' written twice`);
    const header = formatNpyHeader(dtype, shape);
    const dataBytes = shape.reduce((a, b) => a * b, 1) * elementBytes(dtype);
    const size = header.length + dataBytes;
    const zip64 = size >= zip64Limit || this.#pos >= zip64Limit;
    const name = new TextEncoder().encode(`${key}.npy`);
    const extraLen = zip64 ? 20 : 0;
    const local = new Uint8Array(30 + name.length + extraLen);
    const v = new DataView(local.buffer);
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(4, zip64 ? 45 : 20, true); // version needed
    v.setUint16(6, 0x0800, true); // UTF-8 names
    v.setUint16(8, 0, true); // stored
    v.setUint16(10, 0, true); // time 00:00
    v.setUint16(12, (0 << 9) | (1 << 5) | 1, true); // date 1980-01-01
    v.setUint32(14, 0, true); // CRC-32, patched by end()
    v.setUint32(18, zip64 ? U32_MAX : size, true);
    v.setUint32(22, zip64 ? U32_MAX : size, true);
    v.setUint16(26, name.length, true);
    v.setUint16(28, extraLen, true);
    local.set(name, 30);
    if (zip64) {
      v.setUint16(30 + name.length, 0x0001, true);
      v.setUint16(32 + name.length, 16, true);
      v.setBigUint64(34 + name.length, BigInt(size), true);
      v.setBigUint64(42 + name.length, BigInt(size), true);
    }
    const entry: WrittenEntry = { name, crc: 0, size, offset: this.#pos, zip64 };
    this.#write(local);
    this.#open = { entry, crcAt: entry.offset + 14, remaining: dataBytes, key };
    entry.crc = crc32(header, 0);
    this.#write(header);
  }

  /** Appends bytes to the open array. */
  write(bytes: Uint8Array): void {
    const o = this.#open;
    if (o === null) throw new NpzError(this.path, 'write() without begin()');
    if (bytes.length > o.remaining)
      throw new NpzError(this.path, `array '${o.key}': ${bytes.length} bytes written past its declared size`);
    o.entry.crc = crc32(bytes, o.entry.crc);
    o.remaining -= bytes.length;
    this.#write(bytes);
  }

  /** Closes the open array (all its declared bytes must have been written). */
  end(): void {
    const o = this.#open;
    if (o === null) throw new NpzError(this.path, 'end() without begin()');
    if (o.remaining !== 0)
      throw new NpzError(this.path, `array '${o.key}' ended with ${o.remaining} bytes still to write`);
    const crc = new Uint8Array(4);
    new DataView(crc.buffer).setUint32(0, o.entry.crc, true);
    writeSync(this.#fd, crc, 0, 4, o.crcAt);
    this.#entries.push(o.entry);
    this.#open = null;
  }

  /** Adds a whole tensor (CPU or not) as one array. */
  add(key: string, t: Tensor): void {
    this.begin(key, t.dtype, t.shape);
    this.write(tensorBytes(t));
    this.end();
  }

  /** Adds raw C-order bytes as an array of dtype and shape. */
  addBytes(key: string, dtype: DType, shape: readonly number[], bytes: Uint8Array): void {
    this.begin(key, dtype, shape);
    this.write(bytes);
    this.end();
  }

  /** Writes the central directory and moves the file into place. */
  close(): void {
    if (this.#fd < 0) return;
    if (this.#open !== null) {
      const key = this.#open.key;
      this.abort();
      throw new NpzError(this.path, `closed while array '${key}' was still open (file not written)`);
    }
    try {
      const cdStart = this.#pos;
      for (const e of this.#entries) {
        const needOffset = e.offset >= zip64Limit;
        const needSize = e.size >= zip64Limit;
        const extraLen = needSize || needOffset ? 4 + (needSize ? 16 : 0) + (needOffset ? 8 : 0) : 0;
        const rec = new Uint8Array(46 + e.name.length + extraLen);
        const v = new DataView(rec.buffer);
        v.setUint32(0, 0x02014b50, true);
        v.setUint16(4, (3 << 8) | 45, true); // made by: unix, 4.5
        v.setUint16(6, e.zip64 || extraLen > 0 ? 45 : 20, true);
        v.setUint16(8, 0x0800, true);
        v.setUint16(10, 0, true);
        v.setUint16(12, 0, true);
        v.setUint16(14, (0 << 9) | (1 << 5) | 1, true);
        v.setUint32(16, e.crc, true);
        v.setUint32(20, needSize ? U32_MAX : e.size, true);
        v.setUint32(24, needSize ? U32_MAX : e.size, true);
        v.setUint16(28, e.name.length, true);
        v.setUint16(30, extraLen, true);
        v.setUint16(32, 0, true); // comment
        v.setUint16(34, 0, true); // disk
        v.setUint16(36, 0, true); // internal attributes
        v.setUint32(38, (0o100644 << 16) >>> 0, true); // external: regular file rw-r--r--
        v.setUint32(42, needOffset ? U32_MAX : e.offset, true);
        rec.set(e.name, 46);
        if (extraLen > 0) {
          let p = 46 + e.name.length;
          v.setUint16(p, 0x0001, true);
          v.setUint16(p + 2, extraLen - 4, true);
          p += 4;
          if (needSize) {
            v.setBigUint64(p, BigInt(e.size), true);
            v.setBigUint64(p + 8, BigInt(e.size), true);
            p += 16;
          }
          if (needOffset) v.setBigUint64(p, BigInt(e.offset), true);
        }
        this.#write(rec);
      }
      const cdSize = this.#pos - cdStart;
      const n = this.#entries.length;
      if (cdStart >= zip64Limit || cdSize >= zip64Limit || n >= 0xffff) {
        const rec64At = this.#pos;
        const r = new Uint8Array(56 + 20);
        const v = new DataView(r.buffer);
        v.setUint32(0, 0x06064b50, true);
        v.setBigUint64(4, 44n, true);
        v.setUint16(12, (3 << 8) | 45, true);
        v.setUint16(14, 45, true);
        v.setUint32(16, 0, true);
        v.setUint32(20, 0, true);
        v.setBigUint64(24, BigInt(n), true);
        v.setBigUint64(32, BigInt(n), true);
        v.setBigUint64(40, BigInt(cdSize), true);
        v.setBigUint64(48, BigInt(cdStart), true);
        v.setUint32(56, 0x07064b50, true); // locator
        v.setUint32(60, 0, true);
        v.setBigUint64(64, BigInt(rec64At), true);
        v.setUint32(72, 1, true);
        this.#write(r);
      }
      const eocd = new Uint8Array(22);
      const v = new DataView(eocd.buffer);
      v.setUint32(0, 0x06054b50, true);
      v.setUint16(8, Math.min(n, 0xffff), true);
      v.setUint16(10, Math.min(n, 0xffff), true);
      const zip64End = cdStart >= zip64Limit || cdSize >= zip64Limit;
      v.setUint32(12, zip64End ? U32_MAX : cdSize, true);
      v.setUint32(16, zip64End ? U32_MAX : cdStart, true);
      this.#write(eocd);
      this.#fd = -1;
      this.#file.commit();
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Drops the partial file. */
  abort(): void {
    this.#fd = -1;
    this.#open = null;
    this.#file.abort();
  }

  /** `using` closes on success paths; an exception before close() leaves nothing behind. */
  [Symbol.dispose](): void {
    if (this.#fd >= 0) this.abort();
  }
}

/** Writes tensors as an .npz (np.savez layout: '<key>.npy' stored members). */
export function saveNpz(path: string, arrays: Record<string, Tensor>): void {
  using w = new NpzWriter(path);
  for (const [k, t] of Object.entries(arrays)) w.add(k, t);
  w.close();
}
