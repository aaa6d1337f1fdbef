// Run logging: JSONL metrics, TensorBoard event files (TFRecord of Event
// protos with scalar summaries, written without TensorFlow), and a progress
// bar with step, images/s, loss, lr and ETA.
import { appendFileSync, closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

// ---- CRC-32C (Castagnoli), as TFRecord frames use it.
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function maskedCrc(data: Uint8Array): number {
  const c = crc32c(data);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

// ---- minimal protobuf encoding for Event { wall_time = 1 (double), step = 2 (int64),
// file_version = 3 (string), summary = 5 { value = 1 { tag = 1, simple_value = 2 (float) } } }.
function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function field(num: number, wire: number): number[] {
  return varint((num << 3) | wire);
}

function lengthDelimited(num: number, bytes: Uint8Array | number[]): number[] {
  return [...field(num, 2), ...varint(bytes.length), ...bytes];
}

function double(num: number, v: number): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v, true);
  return [...field(num, 1), ...b];
}

function float(num: number, v: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return [...field(num, 5), ...b];
}

function eventBytes(wallTime: number, step: number, body: number[]): Uint8Array {
  return Uint8Array.from([...double(1, wallTime), ...field(2, 0), ...varint(step), ...body]);
}

/** Writes TensorBoard scalars to events.out.tfevents.* in dir. */
export class TensorBoardWriter {
  readonly #fd: number;

  constructor(dir: string) {
    const name = `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.${process.pid}`;
    this.#fd = openSync(join(dir, name), 'a');
    const te = new TextEncoder();
    this.#record(eventBytes(Date.now() / 1000, 0, lengthDelimited(3, te.encode('brain.Event:2'))));
  }

  #record(data: Uint8Array): void {
    const header = new Uint8Array(12);
    const dv = new DataView(header.buffer);
    dv.setBigUint64(0, BigInt(data.length), true);
    dv.setUint32(8, maskedCrc(header.subarray(0, 8)), true);
    const footer = new Uint8Array(4);
    new DataView(footer.buffer).setUint32(0, maskedCrc(data), true);
    writeSync(this.#fd, header);
    writeSync(this.#fd, data);
    writeSync(this.#fd, footer);
  }

  scalars(step: number, values: Record<string, number>): void {
    const te = new TextEncoder();
    const vals: number[] = [];
    for (const [tag, v] of Object.entries(values)) {
      if (!Number.isFinite(v)) continue;
      vals.push(...lengthDelimited(1, [...lengthDelimited(1, te.encode(tag)), ...float(2, v)]));
    }
    this.#record(eventBytes(Date.now() / 1000, step, lengthDelimited(5, vals)));
  }

  flush(): void {
    fsyncSync(this.#fd);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Appends one JSON object per line to stats.jsonl. */
export class JsonlWriter {
  constructor(readonly path: string) {}
  write(record: Record<string, unknown>): void {
    appendFileSync(this.path, JSON.stringify(record) + '\n');
  }
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0
    ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}`
    : `${m}:${String(r).padStart(2, '0')}`;
}

/** A one-line progress bar on a TTY; plain periodic lines otherwise (logs, CI). */
export class Progress {
  readonly #tty = process.stderr.isTTY === true;
  readonly #start = performance.now();
  #lastPrint = 0;

  constructor(
    readonly label: string,
    readonly total: number,
    readonly startStep = 0,
  ) {}

  update(step: number, fields: Record<string, string | number>, force = false): void {
    const now = performance.now();
    if (!force && now - this.#lastPrint < (this.#tty ? 200 : 10000)) return;
    this.#lastPrint = now;
    const done = step - this.startStep;
    const elapsed = (now - this.#start) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - step) : NaN;
    const width = 24;
    const filled = Math.round((width * step) / Math.max(1, this.total));
    const bar = '█'.repeat(Math.min(width, filled)) + '░'.repeat(Math.max(0, width - filled));
    const extras = Object.entries(fields)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? formatNumber(v) : v}`)
      .join('  ');
    const line = `${this.label} ${bar} ${step}/${this.total}  ${extras}  ETA ${formatDuration(eta)}`;
    if (this.#tty) process.stderr.write(`\r${line}\x1b[K`);
    else process.stderr.write(`${line}\n`);
  }

  done(): void {
    if (this.#tty) process.stderr.write('\n');
  }
}

function formatNumber(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1000 || a < 0.01 ? v.toExponential(2) : v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 3);
}
