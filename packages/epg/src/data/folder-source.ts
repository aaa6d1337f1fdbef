// The decode side of ImageFolder, for the main thread and for decode workers:
// file bytes -> PNG/JPEG decode -> channel conversion -> (optional) ADM centre
// crop -> C×H×W. Workers read zip members with the addon-free ZipReader
// ('@epg/torch/io/zip'; worker threads cannot load the rest of @epg/torch),
// opened with the entries the main thread's ZipReader found.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ZipReader, type ZipEntry } from '@epg/torch/io/zip';

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
        flags: Uint16Array;
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
  const entries: ZipEntry[] = names.map((name, i) => ({
    name,
    method: o.methods[i]!,
    compressedSize: o.compressedSizes[i]!,
    size: o.sizes[i]!,
    crc32: o.crcs[i]!,
    headerOffset: o.headerOffsets[i]!,
    isDirectory: false,
    flags: o.flags[i]!,
  }));
  let zip: ZipReader;
  try {
    zip = ZipReader.withEntries(o.path, entries);
  } catch (e) {
    throw new DataError(describeError(e), { cause: e });
  }
  return {
    itemBytes,
    readInto(i, dest) {
      let bytes: Uint8Array;
      try {
        bytes = zip.read(entries[i]!);
      } catch (e) {
        throw new DataError(describeError(e), { cause: e });
      }
      decodeItem(bytes, `${o.path}:${names[i]}`, spec, dest);
      return o.labels[i]!;
    },
    close() {
      zip.close();
    },
  };
}
