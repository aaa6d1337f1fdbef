// The ZIP reader against archives written by Python's zipfile: stored and deflated
// entries, directories, UTF-8 names, comments, ZIP64 records, prepended data, damage.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';

import { io } from '../src/index.js';
import { assertCheckpointError, py, tempDir } from './io-helpers.js';

const tmp = tempDir('epg-io-zip-');
after(() => tmp.cleanup());

interface Made {
  entries: Record<string, { hex: string; method: number; size: number }>;
}

// One Python process (no torch import: fast) writes every archive.
const made = JSON.parse(
  py(
    `
import json, os, random, sys, zipfile
d = sys.argv[1]
rnd = random.Random(0)
files = {
    'a.bin': (bytes(rnd.randrange(256) for _ in range(3000)), zipfile.ZIP_STORED),
    'dir/b.txt': (b'hello zip ' * 500, zipfile.ZIP_DEFLATED),
    'dir/': (b'', zipfile.ZIP_STORED),
    '\\u00fcn\\u00ef/\\u00e7.txt': ('ünï çà'.encode() * 10, zipfile.ZIP_DEFLATED),
    'empty.txt': (b'', zipfile.ZIP_STORED),
    'empty-deflated': (b'', zipfile.ZIP_DEFLATED),
}
def write(path):
    with zipfile.ZipFile(path, 'w') as z:
        for name, (data, method) in files.items():
            z.writestr(zipfile.ZipInfo(name), data, compress_type=method)
        z.comment = b'a comment at the end'
write(os.path.join(d, 'plain.zip'))
# ZIP64 extra fields and end records without 4 GiB of data: lower the limit.
limit = zipfile.ZIP64_LIMIT
zipfile.ZIP64_LIMIT = 100
write(os.path.join(d, 'zip64.zip'))
zipfile.ZIP64_LIMIT = limit
# Data before the archive (as a self-extractor has); offsets stay relative to the original start.
plain = open(os.path.join(d, 'plain.zip'), 'rb').read()
open(os.path.join(d, 'prefixed.zip'), 'wb').write(b'#!/bin/sh\\nexit 0\\n' + plain)
# Python reads all of them back the same way.
for n in ['plain.zip', 'zip64.zip', 'prefixed.zip']:
    with zipfile.ZipFile(os.path.join(d, n)) as z:
        assert z.read('dir/b.txt') == files['dir/b.txt'][0]
print(json.dumps({'entries': {k: {'hex': v.hex(), 'method': m, 'size': len(v)} for k, (v, m) in files.items()}}))
`,
    tmp.dir,
  ),
) as Made;

describe('ZipReader', () => {
  for (const name of ['plain.zip', 'zip64.zip', 'prefixed.zip'])
    test(`lists and reads every entry of ${name}`, () => {
      using z = io.ZipReader.open(tmp.path(name));
      const entries = z.entries();
      assert.deepEqual(
        entries.map((e) => e.name),
        Object.keys(made.entries),
      );
      for (const e of entries) {
        const want = made.entries[e.name]!;
        assert.equal(e.method, want.method === 8 ? 8 : 0, `${e.name}: method`);
        assert.equal(e.size, want.size, `${e.name}: size`);
        assert.equal(e.isDirectory, e.name.endsWith('/'));
        assert.equal(z.read(e.name).toString('hex'), want.hex, `${e.name}: bytes`);
      }
      // Byte ranges of a stored entry, read in place.
      const a = Buffer.from(made.entries['a.bin']!.hex, 'hex');
      assert.deepEqual(z.readRange('a.bin', 0, 10), a.subarray(0, 10));
      assert.deepEqual(z.readRange('a.bin', 1234, 1000), a.subarray(1234, 2234));
      assert.deepEqual(z.readRange('a.bin', 3000, 0), Buffer.alloc(0));
      const dest = new Uint8Array(7);
      z.readRangeInto('a.bin', 2993, dest);
      assert.deepEqual(Buffer.from(dest), a.subarray(2993));
    });

  test('range errors, compressed ranges, missing entries and closed readers are CheckpointErrors', () => {
    const p = tmp.path('plain.zip');
    const z = io.ZipReader.open(p);
    assertCheckpointError(() => z.readRange('a.bin', 2999, 2), p, /outside its 3000 bytes/);
    assertCheckpointError(() => z.readRange('a.bin', -1, 2), p, /outside/);
    assertCheckpointError(() => z.readRange('dir/b.txt', 0, 2), p, /compressed/);
    assertCheckpointError(() => z.read('nope'), p, /no entry "nope"/);
    assert.equal(z.has('a.bin'), true);
    assert.equal(z.has('nope'), false);
    z.close();
    assertCheckpointError(() => z.read('a.bin'), p, /closed/);
  });

  test('not a zip, empty, truncated: clear errors', () => {
    const random = tmp.path('random.bin');
    writeFileSync(random, Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919 + 13) % 251)));
    assertCheckpointError(() => io.ZipReader.open(random), random, /not a zip file/);

    const empty = tmp.path('empty.bin');
    writeFileSync(empty, Buffer.alloc(0));
    assertCheckpointError(() => io.ZipReader.open(empty), empty, /not a zip file/);

    const plain = readFileSync(tmp.path('plain.zip'));
    const cut = tmp.path('cut.zip');
    writeFileSync(cut, plain.subarray(0, Math.floor(plain.length / 2)));
    assertCheckpointError(() => io.ZipReader.open(cut), cut, /truncated zip/);

    // Cut inside the central directory: the end record survives but the directory does not fit.
    const cdCut = tmp.path('cdcut.zip');
    const eocd = plain.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    writeFileSync(cdCut, Buffer.concat([plain.subarray(0, eocd - 60), plain.subarray(eocd)]));
    assertCheckpointError(() => io.ZipReader.open(cdCut), cdCut, /central directory|truncated|corrupt/);

    const missing = tmp.path('missing.zip');
    assertCheckpointError(() => io.ZipReader.open(missing), missing, /cannot open/);
  });

  test('corrupt data is caught by the CRC-32 check', () => {
    const plain = Buffer.from(readFileSync(tmp.path('plain.zip')));
    const a = Buffer.from(made.entries['a.bin']!.hex, 'hex');
    const at = plain.indexOf(a.subarray(0, 64));
    plain[at + 100]! ^= 0xff;
    const bad = tmp.path('badcrc.zip');
    writeFileSync(bad, plain);
    using z = io.ZipReader.open(bad);
    assertCheckpointError(() => z.read('a.bin'), bad, /CRC-32 mismatch/);
    assert.equal(z.read('a.bin', { verify: false }).length, 3000);
    assert.equal(io.crc32(Buffer.from('123456789')), 0xcbf43926);
  });
});
