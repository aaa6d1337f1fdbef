// The decode side of ImageFolder, for the main thread and for decode workers:
// file bytes -> PNG/JPEG decode -> channel conversion -> (optional) ADM centre
// crop -> C×H×W. Workers read zip members themselves, by the offsets the main
// thread's ZipReader found (worker threads cannot load @epg/torch, so they
// cannot use torch.io.ZipReader): a local header and the data, two reads.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import * as zlib from 'node:zlib';

import { crc32 } from '@epg/torch/io/crc32';

import { decodeImage, hwcToChw } from './codecs.js';
import { centerCropArr } from './preprocess.js';
import { DataError, describeError, type WorkerSource } from './types.js';

/** How images of a folder dataset become C×H×W. */
export interface DecodeSpec {
  channels: 1 | 3;
  height: number;
  width: number;
  /** ADM centre crop to resolution×resolution, or null: every image must be height×width already. */
  resolution: number | null;
}

/**
 * Decodes one image file to C×H×W uint8 (into dest if given); a DataError
 * names the file when it is not an image or has the wrong size.
 */
export function decodeItem(bytes: Uint8Array, name: string, spec: DecodeSpec, dest?: Uint8Array): Uint8Array {
  let img = decodeImage(bytes, { name, channels: spec.channels });
  if (spec.resolution !== null) {
    if (img.width !== spec.resolution || img.height !== spec.resolution) img = centerCropArr(img, spec.resolution);
  } else if (img.width !== spec.width || img.height !== spec.height) {
    throw new DataError(
      `${name}: image is ${img.width}×${img.height} (W×H), the dataset's images are ${spec.width}×${spec.height}; ` +
        `open the dataset with { resolution } to centre-crop every image to one size`,
    );
  }
  const chw = hwcToChw(img.pixels, img.height, img.width, img.channels);
  if (dest === undefined) return chw;
  dest.set(chw);
  return dest;
}

/** Where one zip member is (from the central directory). */
export interface ZipMemberInfo {
  name: string;
  headerOffset: number;
  compressedSize: number;
  size: number;
  method: number;
  crc32: number;
}

function readFully(fd: number, dest: Uint8Array, position: number): number {
  let done = 0;
  while (done < dest.length) {
    const n = readSync(fd, dest, done, dest.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** The extracted bytes of a stored or deflated zip member, CRC-checked. */
export function readZipMember(fd: number, zipPath: string, m: ZipMemberInfo): Uint8Array {
  const bad = (problem: string): never => {
    throw new DataError(`${zipPath}: zip entry ${JSON.stringify(m.name)}: ${problem}`);
  };
  const head = new Uint8Array(30);
  if (readFully(fd, head, m.headerOffset) !== 30) bad('local header is past the end of the file (truncated?)');
  const view = new DataView(head.buffer);
  if (view.getUint32(0, true) !== 0x04034b50) bad('bad local header signature (corrupt zip)');
  const start = m.headerOffset + 30 + view.getUint16(26, true) + view.getUint16(28, true);
  const raw = new Uint8Array(m.compressedSize);
  if (readFully(fd, raw, start) !== raw.length) bad('data is truncated');
  let out: Uint8Array;
  if (m.method === 0) out = raw;
  else if (m.method === 8) {
    try {
      out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, m.size) });
    } catch (e) {
      return bad(`cannot inflate (${describeError(e)})`);
    }
  } else return bad(`compression method ${m.method} is not supported (only stored and deflate)`);
  if (out.length !== m.size) bad(`extracted ${out.length} bytes, the directory says ${m.size}`);
  if (crc32(out) !== m.crc32) bad('CRC-32 mismatch (corrupt data)');
  return out;
}

/** The options a decode worker gets for an ImageFolder (structured-cloneable). */
export type FolderSourceOptions = DecodeSpec & {
  labels: Int32Array;
} & (
    | { kind: 'dir'; root: string; /** Paths relative to root, '\n'-separated. */ files: string }
    | {
        kind: 'zip';
        path: string;
        /** Member names, '\n'-separated. */
        names: string;
        headerOffsets: Float64Array;
        compressedSizes: Float64Array;
        sizes: Float64Array;
        methods: Uint16Array;
        crcs: Uint32Array;
      }
  );

/** Opens an ImageFolder inside a decode worker (the factory named by ImageFolder.workerSource()). */
export function openFolderSource(o: FolderSourceOptions): WorkerSource {
  const spec: DecodeSpec = { channels: o.channels, height: o.height, width: o.width, resolution: o.resolution };
  const itemBytes = o.channels * o.height * o.width;
  if (o.kind === 'dir') {
    const files = o.files.split('\n');
    return {
      itemBytes,
      readInto(i, dest) {
        const path = join(o.root, files[i]!);
        let bytes: Uint8Array;
        try {
          bytes = readFileSync(path);
        } catch (e) {
          throw new DataError(`${path}: cannot read (${describeError(e)})`, { cause: e });
        }
        decodeItem(bytes, path, spec, dest);
        return o.labels[i]!;
      },
    };
  }
  const names = o.names.split('\n');
  let fd = -1;
  try {
    fd = openSync(o.path, 'r');
  } catch (e) {
    throw new DataError(`${o.path}: cannot open (${describeError(e)})`, { cause: e });
  }
  return {
    itemBytes,
    readInto(i, dest) {
      const m: ZipMemberInfo = {
        name: names[i]!,
        headerOffset: o.headerOffsets[i]!,
        compressedSize: o.compressedSizes[i]!,
        size: o.sizes[i]!,
        method: o.methods[i]!,
        crc32: o.crcs[i]!,
      };
      decodeItem(readZipMember(fd, o.path, m), `${o.path}:${m.name}`, spec, dest);
      return o.labels[i]!;
    },
    close() {
      if (fd >= 0) closeSync(fd);
      fd = -1;
    },
  };
}
