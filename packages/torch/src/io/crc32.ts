// CRC-32 (zip's and PNG's). Free of the native addon, so that data-loading
// worker threads can import it (as '@epg/torch/io/crc32') without loading libtorch.
import * as zlib from 'node:zlib';

let crcTable: Uint32Array | undefined;

/** CRC-32 (zlib's, when this Node has it); `previous` continues a running CRC over more data. */
export function crc32(data: Uint8Array, previous = 0): number {
  // zlib.crc32 arrived in Node 20.15 / 22.2.
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data, previous) >>> 0;
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let c = ~previous >>> 0;
  for (const b of data) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
