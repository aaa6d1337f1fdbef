// A minimal, safe unpickler: the binary opcodes of pickle protocols 2-5 that
// describe plain data (dicts, lists, tuples, sets, numbers, strings, bytes),
// plus GLOBAL/REDUCE/BUILD/NEWOBJ restricted to what a caller-supplied
// resolver allows. Nothing is imported or executed: a global is either one of
// the resolver's known constructors or an error naming it.
//
// Python values map to:
//   None -> null, bool -> boolean, int -> number (bigint beyond 2^53),
//   float -> number, str -> string, bytes/bytearray -> Uint8Array,
//   list/tuple -> Array, dict -> PyDict (ordered), set/frozenset -> Set,
//   anything a global builds -> whatever the resolver's function returns.

/** The unpickler could not read the data; the message says where and why. */
export class PickleError extends Error {
  override name = 'PickleError';
}

/** A dict being built (insertion ordered, any hashable key), with attributes set by BUILD. */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  /** Instance attributes (OrderedDict's `_metadata` in state dicts); not part of the mapping. */
  attrs: unknown = undefined;
}

/** A global the resolver allows: called by REDUCE, NEWOBJ, or both. */
export class PyCallable {
  constructor(
    readonly qualname: string,
    readonly call?: (args: unknown[]) => unknown,
    /** cls.__new__(cls, *args), for NEWOBJ; defaults to call. */
    readonly construct?: (args: unknown[]) => unknown,
  ) {}
}

/** Values that BUILD may update (obj.__setstate__(state)). */
export interface Buildable {
  setState(state: unknown): void;
}

function isBuildable(x: unknown): x is Buildable {
  return typeof x === 'object' && x !== null && typeof (x as Partial<Buildable>).setState === 'function';
}

export interface UnpickleOptions {
  /** module and name of a GLOBAL / STACK_GLOBAL: a PyCallable, a plain value, or throw. */
  resolveGlobal: (module: string, name: string) => unknown;
  /** The object a persistent id (BINPERSID) stands for; absent: persistent ids are errors. */
  persistentLoad?: (pid: unknown) => unknown;
  /** How to decode Python 2 str (BINSTRING): 'utf-8' (default, as torch.load) or 'latin1'. */
  encoding?: 'utf-8' | 'latin1';
}

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** Little-endian two's complement integer of bytes, as number when safe, else bigint. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(bytes.length * 8);
  return narrowInt(v);
}

function narrowInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Python's repr-ish name of a value, for error messages. */
export function pyTypeName(x: unknown): string {
  if (x === null) return 'None';
  if (Array.isArray(x)) return 'list/tuple';
  if (x instanceof PyDict) return 'dict';
  if (x instanceof PyCallable) return x.qualname;
  if (x instanceof Uint8Array) return 'bytes';
  if (x instanceof Set) return 'set';
  if (typeof x === 'object') return (x as object).constructor.name;
  return typeof x;
}

/** Runs the pickle in data and returns the object it describes. */
export function unpickle(input: Uint8Array, opts: UnpickleOptions): unknown {
  // A plain Uint8Array view: a Buffer's slice() would not copy.
  const data = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let op = 0;
  let opPos = 0;

  const fail = (problem: string): never => {
    const name = OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
    throw new PickleError(`pickle opcode ${name} at byte ${opPos}: ${problem}`);
  };
  const need = (n: number): void => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.length)
      fail(`needs ${n} bytes, only ${data.length - pos} left (truncated pickle)`);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = data.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = (): number => {
    need(1);
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('length too large');
    return Number(v);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated line (truncated pickle)');
    const s = new TextDecoder('latin1').decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const str = (bytes: Uint8Array): string => {
    try {
      return utf8.decode(bytes);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const pop = (): unknown => {
    if (stack.length <= (marks.length ? marks[marks.length - 1]! : 0)) fail('stack underflow (corrupt pickle)');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow (corrupt pickle)');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) return fail('no MARK to pop to (corrupt pickle)');
    return stack.splice(m);
  };
  const getMemo = (i: number): void => {
    if (!memo.has(i)) fail(`memo key ${i} was never stored (corrupt pickle)`);
    stack.push(memo.get(i));
  };
  const dictAt = (x: unknown): PyDict => {
    if (!(x instanceof PyDict)) return fail(`expected a dict, found ${pyTypeName(x)}`);
    return x;
  };
  const setItems = (d: PyDict, items: unknown[]): void => {
    if (items.length % 2) fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) d.map.set(hashKey(items[i]), items[i + 1]);
  };
  const hashKey = (k: unknown): unknown => {
    if (k instanceof PyDict || (Array.isArray(k) && !Object.isFrozen(k)) || k instanceof Set)
      fail(`unhashable dict key (${pyTypeName(k)})`);
    return k;
  };
  const global = (module: string, name: string): unknown => {
    try {
      return opts.resolveGlobal(module, name);
    } catch (e) {
      if (e instanceof PickleError) throw e;
      return fail(e instanceof Error ? e.message : String(e));
    }
  };
  const apply = (f: (args: unknown[]) => unknown, args: unknown[]): unknown => {
    try {
      return f(args);
    } catch (e) {
      if (e instanceof PickleError) throw e;
      return fail(e instanceof Error ? e.message : String(e));
    }
  };
  const tuple = (items: unknown[]): unknown[] => Object.freeze(items) as unknown[];

  for (;;) {
    opPos = pos;
    if (pos >= data.length) {
      op = -1;
      fail('ran out of data before STOP (truncated pickle)');
    }
    op = data[pos++]!;
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol above 5');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail(`STOP with ${stack.length} values on the stack (corrupt pickle)`);
        return stack[0];
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (marks.length && stack.length === marks[marks.length - 1]) marks.pop();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(tuple([]));
        break;
      case 0x85: // TUPLE1
        stack.push(tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push(tuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(tuple([pop(), b, c]));
        break;
      }
      case 0x74: // TUPLE
        stack.push(tuple(popMark()));
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS on ${pyTypeName(s)}`);
        for (const x of items) (s as Set<unknown>).add(hashKey(x));
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark().map(hashKey)));
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l) || Object.isFrozen(l)) fail(`APPEND on ${pyTypeName(l)}`);
        (l as unknown[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l) || Object.isFrozen(l)) fail(`APPENDS on ${pyTypeName(l)}`);
        for (const x of items) (l as unknown[]).push(x);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        dictAt(top()).map.set(hashKey(k), v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(dictAt(top()), items);
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(decodeLong(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('negative length');
        stack.push(decodeLong(take(n)));
        break;
      }
      case 0x49: {
        // INT (protocol 0; also True/False as I01/I00)
        const s = line();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else if (/^[+-]?\d+$/.test(s)) stack.push(narrowInt(BigInt(s)));
        else fail(`bad INT ${JSON.stringify(s)}`);
        break;
      }
      case 0x4c: {
        // LONG (protocol 0)
        const s = line().replace(/L$/, '');
        if (!/^[+-]?\d+$/.test(s)) fail(`bad LONG ${JSON.stringify(s)}`);
        stack.push(narrowInt(BigInt(s)));
        break;
      }
      case 0x47: // BINFLOAT
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: {
        // FLOAT (protocol 0)
        const s = line();
        const v = Number(s);
        if (Number.isNaN(v) && !/nan/i.test(s)) fail(`bad FLOAT ${JSON.stringify(s)}`);
        stack.push(v);
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x58: // BINUNICODE
        stack.push(str(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(take(u64())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(take(u64()).slice());
        break;
      case 0x54: // BINSTRING
      case 0x55: {
        // SHORT_BINSTRING
        const n = op === 0x54 ? i32() : u8();
        if (n < 0) fail('negative length');
        const b = take(n);
        stack.push(opts.encoding === 'latin1' ? new TextDecoder('latin1').decode(b) : str(b));
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: {
        // PUT
        const s = line();
        if (!/^\d+$/.test(s)) fail(`bad PUT ${JSON.stringify(s)}`);
        memo.set(Number(s), top());
        break;
      }
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        getMemo(u8());
        break;
      case 0x6a: // LONG_BINGET
        getMemo(u32());
        break;
      case 0x67: {
        // GET
        const s = line();
        if (!/^\d+$/.test(s)) fail(`bad GET ${JSON.stringify(s)}`);
        getMemo(Number(s));
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('module and name must be strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const f = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are a ${pyTypeName(args)}, not a tuple`);
        if (!(f instanceof PyCallable) || f.call === undefined) return fail(`${pyTypeName(f)} is not callable`);
        stack.push(apply(f.call, args as unknown[]));
        break;
      }
      case 0x81: // NEWOBJ
      case 0x92: {
        // NEWOBJ_EX
        let kwargs: unknown = null;
        if (op === 0x92) kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail(`arguments are a ${pyTypeName(args)}, not a tuple`);
        if (kwargs instanceof PyDict && kwargs.map.size > 0) fail('keyword arguments are not supported');
        if (!(cls instanceof PyCallable)) return fail(`${pyTypeName(cls)} cannot be instantiated`);
        const ctor = cls.construct ?? cls.call;
        if (ctor === undefined) return fail(`${cls.qualname} cannot be instantiated`);
        stack.push(apply(ctor, args as unknown[]));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict) {
          obj.attrs = state;
        } else if (isBuildable(obj)) {
          const b = obj;
          apply(() => b.setState(state), []);
        } else {
          fail(`cannot set the state of ${pyTypeName(obj)}`);
        }
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (opts.persistentLoad === undefined) fail('persistent ids are not allowed here');
        const load = opts.persistentLoad!;
        stack.push(apply(() => load(pid), []));
        break;
      }
      case 0x50: {
        // PERSID
        const pid = line();
        if (opts.persistentLoad === undefined) fail('persistent ids are not allowed here');
        const load = opts.persistentLoad!;
        stack.push(apply(() => load(pid), []));
        break;
      }
      default:
        fail(
          OPCODE_NAMES[op] === undefined
            ? 'unknown opcode (not a pickle, or corrupt)'
            : 'opcode not supported by this unpickler (it is not used for plain data)',
        );
    }
  }
}
