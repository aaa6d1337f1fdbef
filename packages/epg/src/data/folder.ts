// ImageFolder: torchvision's class-folder layout, <root>[/<subdir>]/<class>/**/<image>,
// from a directory or from a .zip read in place (torch.io.ZipReader). Class
// folders sorted alphabetically give the labels (spec §1; for ImageNet this
// equals EPG's "file name before the first _" rule, as its files keep the
// synset prefix). PNG and JPEG files are images; other files are ignored.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { io } from '@epg/torch';

import { readImageHeader } from './codecs.js';
import { decodeItem, type DecodeSpec, type FolderSourceOptions } from './folder-source.js';
import {
  checkIndex,
  DataError,
  describeError,
  type ImageDataset,
  type ImageItem,
  type WorkerSourceSpec,
} from './types.js';

export interface ImageFolderOptions {
  /** A directory, or a .zip file, holding class folders (possibly under subdir). */
  root: string;
  /** A folder inside root that holds the class folders, e.g. 'train'. */
  subdir?: string;
  /**
   * ADM centre crop (spec §1) of every image to resolution×resolution.
   * Without it every image must have the size of the first one.
   */
  resolution?: number;
  /** 3 (RGB, the default, as torchvision's loader) or 1 (grayscale, PIL's convert('L')). */
  channels?: 1 | 3;
  /** Read every file's header at open to check that all have one size (default false: checked as decoded). */
  checkSizes?: boolean;
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;

function skipName(name: string): boolean {
  return name.startsWith('.') || name === '__MACOSX';
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Listing {
  classNames: string[];
  files: string[];
  labels: Int32Array;
}

function finishListing(where: string, perClass: Map<string, string[]>): Listing {
  const classNames = [...perClass.keys()].sort(byCodePoint);
  if (classNames.length === 0)
    throw new DataError(
      `ImageFolder: ${where} has no class folders (expected <class>/<image>.png or .jpg, one folder per class)`,
    );
  const files: string[] = [];
  const labels: number[] = [];
  classNames.forEach((c, label) => {
    const list = perClass.get(c)!.sort(byCodePoint);
    if (list.length === 0) throw new DataError(`ImageFolder: class folder ${where}/${c} has no PNG or JPEG images`);
    for (const f of list) {
      files.push(f);
      labels.push(label);
    }
  });
  return { classNames, files, labels: Int32Array.from(labels) };
}

function listDirectory(base: string): Listing {
  const perClass = new Map<string, string[]>();
  const isDir = (p: string): boolean => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  const walk = (dir: string, rel: string, out: string[]): void => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      if (skipName(d.name)) continue;
      const path = join(dir, d.name);
      const r = `${rel}/${d.name}`;
      if (d.isDirectory() || (d.isSymbolicLink() && isDir(path))) walk(path, r, out);
      else if (IMAGE_EXT.test(d.name)) out.push(r);
    }
  };
  for (const d of readdirSync(base, { withFileTypes: true })) {
    if (skipName(d.name)) continue;
    const path = join(base, d.name);
    if (!(d.isDirectory() || (d.isSymbolicLink() && isDir(path)))) continue;
    const files: string[] = [];
    walk(path, d.name, files);
    perClass.set(d.name, files);
  }
  return finishListing(base, perClass);
}

function listZip(zip: io.ZipReader, prefix: string, where: string): Listing & { entries: io.ZipEntry[] } {
  const perClass = new Map<string, string[]>();
  const byName = new Map<string, io.ZipEntry>();
  const tops = new Set<string>();
  for (const e of zip.entries()) {
    const top = e.name.split('/')[0]!;
    if (top !== '' && (e.isDirectory || e.name.includes('/'))) tops.add(top);
    if (!e.name.startsWith(prefix)) continue;
    const parts = e.name.slice(prefix.length).split('/');
    if (parts.length < 2 || parts.some(skipName)) continue;
    const cls = parts[0]!;
    if (cls === '') continue;
    if (!perClass.has(cls)) perClass.set(cls, []);
    if (e.isDirectory || !IMAGE_EXT.test(parts[parts.length - 1]!)) continue;
    perClass.get(cls)!.push(e.name);
    byName.set(e.name, e);
  }
  if (prefix !== '' && perClass.size === 0)
    throw new DataError(
      `ImageFolder: ${zip.path} has no folder ${prefix} (its top-level folders: ${[...tops].sort(byCodePoint).join(', ') || 'none'})`,
    );
  const listing = finishListing(where, perClass);
  return { ...listing, entries: listing.files.map((f) => byName.get(f)!) };
}

/** A class-folder image dataset, from a directory or a zip file read in place. */
export class ImageFolder implements ImageDataset {
  readonly root: string;
  readonly subdir: string | null;
  readonly resolution: number | null;
  readonly length: number;
  readonly numClasses: number;
  readonly classNames: string[];
  readonly channels: 1 | 3;
  readonly height: number;
  readonly width: number;
  /** Image paths: relative to the (sub)folder for directories, member names for zips. */
  readonly files: string[];
  readonly labels: Int32Array;
  readonly isZip: boolean;
  #base: string;
  #zip: io.ZipReader | null;
  #entries: io.ZipEntry[] | null;
  #spec: DecodeSpec;
  #workerOptions: FolderSourceOptions | undefined;

  private constructor(
    opts: ImageFolderOptions,
    base: string,
    listing: Listing,
    zip: io.ZipReader | null,
    entries: io.ZipEntry[] | null,
  ) {
    this.root = opts.root;
    this.subdir = opts.subdir ?? null;
    this.resolution = opts.resolution ?? null;
    this.channels = opts.channels ?? 3;
    this.classNames = listing.classNames;
    this.numClasses = listing.classNames.length;
    this.files = listing.files;
    this.labels = listing.labels;
    this.length = listing.files.length;
    this.isZip = zip !== null;
    this.#base = base;
    this.#zip = zip;
    this.#entries = entries;
    let h = this.resolution ?? 0;
    let w = this.resolution ?? 0;
    if (this.resolution === null) {
      const header = this.#header(0);
      h = header.height;
      w = header.width;
    }
    this.height = h;
    this.width = w;
    this.#spec = { channels: this.channels, height: h, width: w, resolution: this.resolution };
  }

  /** Lists the classes and images of opts.root (a directory or a .zip). */
  static open(opts: ImageFolderOptions): ImageFolder {
    const { root } = opts;
    if (opts.resolution !== undefined && !(Number.isInteger(opts.resolution) && opts.resolution > 0))
      throw new RangeError(`ImageFolder: resolution must be a positive integer, got ${opts.resolution}`);
    if (opts.channels !== undefined && opts.channels !== 1 && opts.channels !== 3)
      throw new RangeError(`ImageFolder: channels must be 1 or 3, got ${String(opts.channels)}`);
    if (!existsSync(root))
      throw new DataError(
        `ImageFolder: ${root} does not exist (expected a folder of class folders, or a .zip file of them)`,
      );
    const sub = (opts.subdir ?? '').replace(/^\/+|\/+$/g, '');
    let ds: ImageFolder;
    if (statSync(root).isDirectory()) {
      const base = sub === '' ? root : join(root, sub);
      if (!existsSync(base) || !statSync(base).isDirectory())
        throw new DataError(`ImageFolder: ${root} has no folder ${sub}`);
      ds = new ImageFolder(opts, base, listDirectory(base), null, null);
    } else {
      let zip: io.ZipReader;
      try {
        zip = io.ZipReader.open(root);
      } catch (e) {
        throw new DataError(`ImageFolder: ${root} is neither a folder nor a readable zip file (${describeError(e)})`, {
          cause: e,
        });
      }
      try {
        const where = sub === '' ? root : `${root}:${sub}`;
        const listing = listZip(zip, sub === '' ? '' : `${sub}/`, where);
        ds = new ImageFolder(opts, root, listing, zip, listing.entries);
      } catch (e) {
        zip.close();
        throw e;
      }
    }
    if (opts.checkSizes && ds.resolution === null) ds.#checkSizes();
    return ds;
  }

  /** A file's name for messages: its path, or zip:member. */
  fileName(i: number): string {
    return this.#zip ? `${this.root}:${this.files[i]}` : join(this.#base, this.files[i]!);
  }

  #readSync(i: number): Uint8Array {
    try {
      if (this.#zip) return this.#zip.read(this.#entries![i]!);
      return readFileSync(join(this.#base, this.files[i]!));
    } catch (e) {
      throw new DataError(`${this.fileName(i)}: cannot read (${describeError(e)})`, { cause: e });
    }
  }

  #header(i: number): { width: number; height: number } {
    let bytes: Uint8Array;
    const e = this.#entries?.[i];
    if (this.#zip && e && e.method === 0 && e.size > 65536) bytes = this.#zip.readRange(e, 0, 65536);
    else bytes = this.#readSync(i);
    const h = readImageHeader(bytes, this.fileName(i));
    if (h === null) throw new DataError(`${this.fileName(i)}: truncated image (no size in its header)`);
    return h;
  }

  #checkSizes(): void {
    for (let i = 1; i < this.length; i++) {
      const h = this.#header(i);
      if (h.width !== this.width || h.height !== this.height)
        throw new DataError(
          `${this.fileName(i)}: image is ${h.width}×${h.height} (W×H), the first image (${this.fileName(0)}) is ` +
            `${this.width}×${this.height}; open the dataset with { resolution } to centre-crop every image to one size`,
        );
    }
  }

  async get(i: number): Promise<ImageItem> {
    checkIndex(i, this.length, 'ImageFolder');
    let bytes: Uint8Array;
    if (this.#zip) bytes = this.#readSync(i);
    else {
      try {
        bytes = await readFile(join(this.#base, this.files[i]!));
      } catch (e) {
        throw new DataError(`${this.fileName(i)}: cannot read (${describeError(e)})`, { cause: e });
      }
    }
    return { pixels: decodeItem(bytes, this.fileName(i), this.#spec), label: this.labels[i]! };
  }

  /** Decoding is work: the Loader runs it in worker threads, which open the dataset with this. */
  workerSource(): WorkerSourceSpec {
    if (this.#workerOptions === undefined) {
      const spec = { ...this.#spec, labels: this.labels };
      if (this.#zip) {
        const es = this.#entries!;
        this.#workerOptions = {
          ...spec,
          kind: 'zip',
          path: this.root,
          names: this.files.join('\n'),
          headerOffsets: Float64Array.from(es, (e) => e.headerOffset),
          compressedSizes: Float64Array.from(es, (e) => e.compressedSize),
          sizes: Float64Array.from(es, (e) => e.size),
          methods: Uint16Array.from(es, (e) => e.method),
          crcs: Uint32Array.from(es, (e) => e.crc32),
          flags: Uint16Array.from(es, (e) => e.flags),
        };
      } else this.#workerOptions = { ...spec, kind: 'dir', root: this.#base, files: this.files.join('\n') };
    }
    return {
      module: new URL('./folder-source.js', import.meta.url).href,
      factory: 'openFolderSource',
      options: this.#workerOptions,
    };
  }

  close(): void {
    this.#zip?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
