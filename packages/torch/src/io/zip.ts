// A minimal ZIP reader: the central directory (ZIP64 included) is read once
// from the end of the file, entries are read on demand with positioned reads.
// Stored entries (method 0) are read in place, also by byte range; deflated
// ones (method 8) are inflated with node:zlib. No encryption, no multi-disk.
// Free of the native addon: decode worker threads import it as
// '@epg/torch/io/zip' and open a zip with the entries the main thread read.
import { closeSync, fstatSync, openSync } from 'node:fs';
import * as zlib from 'node:zlib';

import { CheckpointError, describeError } from './errors.js';
import { readAt } from './fs.js';
import { crc32 } from './crc32.js';

/** One entry of the central directory. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated (others cannot be read). */
  method: number;
  /** Bytes in the archive. */
  compressedSize: number;
  /** Bytes once extracted. */
  size: number;
  crc32: number;
  /** Offset of the local file header. */
  headerOffset: number;
  isDirectory: boolean;
  /** General purpose flags (bit 0: encrypted, bit 11: UTF-8 name). */
  flags: number;
}

export interface ZipReadOptions {
  /** Check the CRC-32 of the extracted bytes (default true). */
  verify?: boolean;
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

// Code page 437, the encoding of names without the UTF-8 flag (bytes 0x80-0xff).
const CP437 =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀' +
  'αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

function decodeName(bytes: Uint8Array, utf8: boolean): string {
  if (utf8 || bytes.every((b) => b < 0x80)) return new TextDecoder('utf-8').decode(bytes);
  try {
    // Many tools write UTF-8 without setting the flag.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    let s = '';
    for (const b of bytes) s += b < 0x80 ? String.fromCharCode(b) : CP437[b - 0x80]!;
    return s;
  }
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('a 64-bit field is larger than 2^53');
  return Number(v);
}

/** A ZIP archive opened for reading; close() it (or use `using`). */
export class ZipReader {
  readonly path: string;
  /** Size of the file in bytes. */
  readonly fileSize: number;
  #fd: number;
  #entries: ZipEntry[];
  #byName: Map<string, ZipEntry>;
  #dataOffsets = new Map<ZipEntry, number>();

  private constructor(path: string, fd: number, fileSize: number, entries: ZipEntry[]) {
    this.path = path;
    this.#fd = fd;
    this.fileSize = fileSize;
    this.#entries = entries;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** Opens path and reads its central directory (the entries' data is not read). */
  static open(path: string): ZipReader {
    return ZipReader.#openWith(path, (fd, size) => readDirectory(path, fd, size));
  }

  /**
   * Opens path with a central directory read earlier (by ZipReader.open, e.g.
   * on another thread): no directory parse, so each decode worker of a large
   * archive opens it at the cost of one open().
   */
  static withEntries(path: string, entries: ZipEntry[]): ZipReader {
    return ZipReader.#openWith(path, () => entries);
  }

  /** Opens path, gets its entries, and closes the file again if that fails; errors name the file. */
  static #openWith(path: string, entriesOf: (fd: number, size: number) => ZipEntry[]): ZipReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new CheckpointError(path, `cannot open: ${describeError(e)}`, { cause: e });
    }
    try {
      const size = fstatSync(fd).size;
      return new ZipReader(path, fd, size, entriesOf(fd, size));
    } catch (e) {
      closeSync(fd);
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError(path, `cannot read zip: ${describeError(e)}`, { cause: e });
    }
  }

  /** All entries, in central directory order. */
  entries(): ZipEntry[] {
    return [...this.#entries];
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  entry(name: string): ZipEntry {
    const e = this.#byName.get(name);
    if (e === undefined) throw new CheckpointError(this.path, `zip has no entry ${JSON.stringify(name)}`);
    return e;
  }

  get isOpen(): boolean {
    return this.#fd >= 0;
  }

  #fdOrThrow(): number {
    if (this.#fd < 0) throw new CheckpointError(this.path, 'zip is closed');
    return this.#fd;
  }

  #fail(entry: ZipEntry, problem: string): never {
    throw new CheckpointError(this.path, `zip entry ${JSON.stringify(entry.name)}: ${problem}`);
  }

  /** Absolute file offset of an entry's data (from its local header; cached). */
  dataOffset(name: string | ZipEntry): number {
    const entry = typeof name === 'string' ? this.entry(name) : name;
    const cached = this.#dataOffsets.get(entry);
    if (cached !== undefined) return cached;
    const fd = this.#fdOrThrow();
    const head = new Uint8Array(30);
    if (readAt(fd, head, entry.headerOffset) !== 30) this.#fail(entry, 'local header is past the end of the file');
    const view = new DataView(head.buffer);
    if (view.getUint32(0, true) !== SIG_LOCAL) this.#fail(entry, 'bad local header signature (corrupt zip)');
    const offset = entry.headerOffset + 30 + view.getUint16(26, true) + view.getUint16(28, true);
    if (offset + entry.compressedSize > this.fileSize)
      this.#fail(
        entry,
        `data [${offset}, ${offset + entry.compressedSize}) runs past the end of the ${this.fileSize}-byte file (truncated?)`,
      );
    this.#dataOffsets.set(entry, offset);
    return offset;
  }

  #checkReadable(entry: ZipEntry): void {
    if (entry.flags & 1) this.#fail(entry, 'is encrypted');
    if (entry.method !== 0 && entry.method !== 8)
      this.#fail(entry, `uses compression method ${entry.method} (only stored and deflate are supported)`);
  }

  /** The extracted bytes of an entry. */
  read(name: string | ZipEntry, opts: ZipReadOptions = {}): Buffer {
    const entry = typeof name === 'string' ? this.entry(name) : name;
    this.#checkReadable(entry);
    const start = this.dataOffset(entry);
    const fd = this.#fdOrThrow();
    const raw = Buffer.allocUnsafeSlow(entry.compressedSize);
    if (readAt(fd, raw, start) !== raw.length) this.#fail(entry, 'file truncated');
    let out: Buffer;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size)
        this.#fail(entry, `stored entry has compressed size ${entry.compressedSize} != size ${entry.size}`);
      out = raw;
    } else {
      try {
        out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (e) {
        return this.#fail(entry, `cannot inflate: ${describeError(e)}`);
      }
      if (out.length !== entry.size)
        this.#fail(entry, `inflated to ${out.length} bytes, the directory says ${entry.size}`);
    }
    if ((opts.verify ?? true) && crc32(out) !== entry.crc32) this.#fail(entry, 'CRC-32 mismatch (corrupt data)');
    return out;
  }

  /** Bytes [offset, offset + length) of a stored entry, read in place. */
  readRange(name: string | ZipEntry, offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafeSlow(length);
    this.readRangeInto(name, offset, out);
    return out;
  }

  /** Fills dest with the bytes of a stored entry starting at offset (no copy through another buffer). */
  readRangeInto(name: string | ZipEntry, offset: number, dest: Uint8Array): void {
    const entry = typeof name === 'string' ? this.entry(name) : name;
    this.#checkReadable(entry);
    if (entry.method !== 0) this.#fail(entry, 'is compressed: byte ranges can only be read from stored entries');
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + dest.length > entry.size)
      this.#fail(entry, `range [${offset}, ${offset + dest.length}) is outside its ${entry.size} bytes`);
    const start = this.dataOffset(entry);
    if (readAt(this.#fdOrThrow(), dest, start + offset) !== dest.length) this.#fail(entry, 'file truncated');
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function readDirectory(path: string, fd: number, size: number): ZipEntry[] {
  const fail = (problem: string): never => {
    throw new CheckpointError(path, problem);
  };
  if (size < EOCD_SIZE) fail(`not a zip file (${size} bytes, too short for an end of central directory record)`);
  // The end of central directory record is at the end, before a comment of up to 64 KiB.
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT + 20);
  const tailStart = size - tailLen;
  const tail = new Uint8Array(tailLen);
  readAt(fd, tail, tailStart);
  const tv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    const head = new Uint8Array(4);
    readAt(fd, head, 0);
    if (new DataView(head.buffer).getUint32(0, true) === SIG_LOCAL)
      fail('truncated zip file (it starts like a zip but has no end of central directory record)');
    fail('not a zip file (no end of central directory record)');
  }
  const eocdAbs = tailStart + eocd;
  if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0)
    fail('multi-disk zip archives are not supported');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  let cdEnd = eocdAbs; // where the central directory should end
  // ZIP64: a locator right before the record points at the ZIP64 end record.
  const loc = eocd - 20;
  if (loc >= 0 && tv.getUint32(loc, true) === SIG_EOCD64_LOCATOR) {
    const rec64 = u64(tv, loc + 8);
    const buf = new Uint8Array(56);
    if (rec64 + 56 > size || readAt(fd, buf, rec64) !== 56) fail('ZIP64 end record is past the end of the file');
    const v = new DataView(buf.buffer);
    if (v.getUint32(0, true) !== SIG_EOCD64) fail('bad ZIP64 end of central directory signature (corrupt zip)');
    count = u64(v, 32);
    cdSize = u64(v, 40);
    cdOffset = u64(v, 48);
    cdEnd = rec64;
  }
  // Data prepended to the archive (self-extractors) shifts every offset, as Python's zipfile allows.
  const shift = cdEnd - cdSize - cdOffset;
  if (shift < 0)
    fail(
      `central directory [${cdOffset}, ${cdOffset + cdSize}) does not fit before its end record at ${cdEnd} (truncated or corrupt zip)`,
    );
  const cd = new Uint8Array(cdSize);
  if (readAt(fd, cd, cdOffset + shift) !== cdSize) fail('central directory is truncated');
  const v = new DataView(cd.buffer);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || v.getUint32(p, true) !== SIG_CENTRAL)
      fail(`central directory entry ${i} is corrupt (bad signature or past the directory's end)`);
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const crc = v.getUint32(p + 16, true);
    let compressedSize = v.getUint32(p + 20, true);
    let usize = v.getUint32(p + 24, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    let headerOffset = v.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) fail(`central directory entry ${i} runs past the directory's end`);
    const name = decodeName(cd.subarray(p + 46, p + 46 + nameLen), (flags & 0x800) !== 0);
    // ZIP64 extended information: the 64-bit values of the fields saturated at 0xffffffff, in order.
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = v.getUint16(q, true);
      const len = v.getUint16(q + 2, true);
      if (id === 0x0001) {
        let r = q + 4;
        const take = (): number => {
          if (r + 8 > q + 4 + len) fail(`ZIP64 extra field of ${JSON.stringify(name)} is too short`);
          const val = u64(v, r);
          r += 8;
          return val;
        };
        if (usize === 0xffffffff) usize = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (headerOffset === 0xffffffff) headerOffset = take();
      }
      q += 4 + len;
    }
    headerOffset += shift;
    if (headerOffset + 30 > size)
      fail(`entry ${JSON.stringify(name)} has its local header at ${headerOffset}, past the end (truncated?)`);
    entries.push({
      name,
      method,
      compressedSize,
      size: usize,
      crc32: crc,
      headerOffset,
      isDirectory: name.endsWith('/'),
      flags,
    });
    p = end;
  }
  return entries;
}
