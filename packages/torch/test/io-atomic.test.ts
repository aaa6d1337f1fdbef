// Atomic writes (io/atomic.ts), the one helper behind every file writer: the
// destination holds the old bytes or the new ones, never a torn file, and no
// temporary is left behind, on success or failure. Also: the modules decode
// workers import (zip, atomic) never reach the native addon.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { io } from '../src/index.js';
import { setChunkBytesForTesting } from '../src/io/fs.js';
import { tempDir } from './io-helpers.js';

const tmp = tempDir('epg-io-atomic-');
after(() => tmp.cleanup());

const leftovers = (dir: string): string[] =>
  readdirSync(dir).filter((n) => n.includes('.tmp-') || n.includes('.partial-'));

describe('io.writeFileAtomic', () => {
  test('creates and replaces a file, leaving no temporary', () => {
    const dir = join(tmp.dir, 'basic');
    mkdirSync(dir);
    const path = join(dir, 'a.json');
    io.writeFileAtomic(path, '{"v":1}\n');
    assert.equal(readFileSync(path, 'utf8'), '{"v":1}\n');
    io.writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...readFileSync(path)], [1, 2, 3]);
    assert.deepEqual(leftovers(dir), []);
  });

  test('writes all bytes when each write moves only a few (the short-write loop)', () => {
    const path = join(tmp.dir, 'chunked.bin');
    const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) % 256);
    const old = setChunkBytesForTesting(7);
    try {
      io.writeFileAtomic(path, data);
    } finally {
      setChunkBytesForTesting(old);
    }
    assert.deepEqual(new Uint8Array(readFileSync(path)), data);
  });

  test('a replaced file keeps its permissions; a new one gets 0644 (less the umask)', () => {
    const path = join(tmp.dir, 'mode.txt');
    io.writeFileAtomic(path, 'x');
    assert.equal(statSync(path).mode & 0o777, 0o644 & ~process.umask());
    chmodSync(path, 0o600);
    io.writeFileAtomic(path, 'y');
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('a failed write leaves the old file and no temporary', () => {
    const dir = join(tmp.dir, 'fail');
    mkdirSync(dir);
    const path = join(dir, 'keep.txt');
    writeFileSync(path, 'old');
    assert.throws(() => {
      using f = new io.AtomicFile(path);
      f.write(new TextEncoder().encode('new, half written'));
      throw new Error('boom');
    }, /boom/);
    assert.equal(readFileSync(path, 'utf8'), 'old');
    assert.deepEqual(leftovers(dir), []);
    // Into a folder that does not exist: the error names the path, nothing is created.
    assert.throws(() => io.writeFileAtomic(join(dir, 'missing', 'x'), 'x'), /ENOENT/);
  });
});

describe('io.writeDirAtomic', () => {
  test('the folder appears complete, or (on an error) not at all', async () => {
    const out = join(tmp.dir, 'shards');
    const r = await io.writeDirAtomic(out, async (d) => {
      io.writeFileSynced(join(d, 'a'), new Uint8Array([9]));
      return 5;
    });
    assert.equal(r, 5);
    assert.deepEqual(readdirSync(out), ['a']);
    const failed = join(tmp.dir, 'failed');
    await assert.rejects(
      io.writeDirAtomic(failed, async (d) => {
        io.writeFileSynced(join(d, 'a'), new Uint8Array([1]));
        throw new Error('decode failed');
      }),
      /decode failed/,
    );
    assert.equal(existsSync(failed), false);
    assert.deepEqual(leftovers(tmp.dir), []);
  });
});

describe('addon-free io modules', () => {
  test('io/zip, io/atomic, io/fs and io/crc32 import nothing that loads the native addon', () => {
    // Decode workers import these; a worker thread cannot load the addon.
    const ioDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'io');
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(join(ioDir, file), 'utf8');
      for (const m of src.matchAll(/from '(\.[^']+)'/g)) {
        assert.ok(m[1]!.startsWith('./'), `${file} imports ${m[1]} outside io/`);
        visit(m[1]!.slice(2));
      }
    };
    for (const f of ['zip.js', 'atomic.js', 'fs.js', 'crc32.js']) visit(f);
    assert.deepEqual([...seen].sort(), ['atomic.js', 'crc32.js', 'errors.js', 'fs.js', 'zip.js']);
  });
});
