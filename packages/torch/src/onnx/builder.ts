// The ONNX graph under construction: nodes, initializers and unique value names,
// with helpers for the constants that operator mappings need (axes, shapes, scalars).
import type { DType } from '../dtype.js';
import { ATTRIBUTE_TYPE, ONNX_DTYPE, type AttributeMsg, type NodeMsg, type TensorMsg } from './proto.js';

/** An attribute value: numbers are INT unless wrapped with float(); arrays of numbers are INTS. */
export type AttrValue =
  number | string | readonly number[] | { float: number } | { floats: readonly number[] } | TensorMsg;

export function onnxDtype(dtype: DType): number {
  const code = (ONNX_DTYPE as Record<string, number>)[dtype];
  if (code === undefined) throw new TypeError(`onnx: tensors of dtype ${dtype} cannot be exported`);
  return code;
}

function attribute(name: string, v: AttrValue): AttributeMsg {
  if (typeof v === 'number') return { name, type: ATTRIBUTE_TYPE.INT, i: v };
  if (typeof v === 'string') return { name, type: ATTRIBUTE_TYPE.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: ATTRIBUTE_TYPE.INTS, ints: [...(v as number[])] };
  if ('float' in v) return { name, type: ATTRIBUTE_TYPE.FLOAT, f: v.float };
  if ('floats' in v) return { name, type: ATTRIBUTE_TYPE.FLOATS, floats: [...v.floats] };
  return { name, type: ATTRIBUTE_TYPE.TENSOR, t: v as TensorMsg };
}

/** Little-endian bytes of numbers in a dtype (constants the mappings create). */
export function encodeValues(values: readonly number[], dtype: DType): Uint8Array {
  switch (dtype) {
    case 'float32':
      return new Uint8Array(Float32Array.from(values).buffer);
    case 'float64':
      return new Uint8Array(Float64Array.from(values).buffer);
    case 'int64':
      return new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(Math.trunc(v)))).buffer);
    case 'int32':
      return new Uint8Array(Int32Array.from(values).buffer);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(values.map((v) => (dtype === 'bool' ? Number(v !== 0) : v)));
    default:
      throw new TypeError(`onnx: constants of dtype ${dtype} are not supported`);
  }
}

/** A tensor message holding values (attribute values such as ConstantOfShape's). */
export function tensorMsg(name: string, values: readonly number[], dtype: DType, dims: readonly number[]): TensorMsg {
  return { name, dims: [...dims], dataType: onnxDtype(dtype), rawData: encodeValues(values, dtype) };
}

export class GraphBuilder {
  readonly nodes: NodeMsg[] = [];
  readonly initializers: TensorMsg[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;

  /** A fresh value name based on hint. */
  name(hint: string): string {
    const base = hint.replace(/[^A-Za-z0-9_.:/-]/g, '_') || 'v';
    let name = base;
    while (this.used.has(name)) name = `${base}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  /** Reserves an exact name (graph inputs and outputs); an error if it is taken. */
  reserve(name: string): string {
    if (this.used.has(name)) throw new Error(`onnx: the name '${name}' is used twice`);
    this.used.add(name);
    return name;
  }

  /** Adds a node; returns its output names (nOut of them, named after opType unless given). */
  node(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, AttrValue | undefined> = {},
    o: { nOut?: number; outputs?: readonly string[]; doc?: string } = {},
  ): string[] {
    const outputs = o.outputs ? [...o.outputs] : Array.from({ length: o.nOut ?? 1 }, () => this.name(opType));
    const attribute = Object.entries(attrs)
      .filter((e): e is [string, AttrValue] => e[1] !== undefined)
      .map(([k, v]) => attribute_(k, v));
    this.nodes.push({
      input: [...inputs],
      output: outputs,
      name: this.name(`n_${opType}`),
      opType,
      attribute,
      ...(o.doc ? { docString: o.doc } : {}),
    });
    return outputs;
  }

  /** One-output node. */
  op(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, AttrValue | undefined> = {},
    doc?: string,
  ): string {
    return this.node(opType, inputs, attrs, { doc })[0]!;
  }

  /** An initializer from raw little-endian bytes. */
  initializer(hint: string, dtype: DType, dims: readonly number[], raw: Uint8Array): string {
    const name = this.name(hint);
    this.initializers.push({ name, dims: [...dims], dataType: onnxDtype(dtype), rawData: raw });
    return name;
  }

  /** A small constant (cached: the same values share one initializer). */
  constant(values: readonly number[], dtype: DType, dims: readonly number[] = [values.length]): string {
    const key = `${dtype}|${dims.join(',')}|${values.join(',')}`;
    let name = this.constCache.get(key);
    if (name === undefined) {
      name = this.initializer('const', dtype, dims, encodeValues(values, dtype));
      this.constCache.set(key, name);
    }
    return name;
  }

  private readonly memoCache = new Map<string, string>();
  /** The value make() builds, once per key (e.g. one transpose per weight, however often it is used). */
  memo(key: string, make: () => string): string {
    let name = this.memoCache.get(key);
    if (name === undefined) {
      name = make();
      this.memoCache.set(key, name);
    }
    return name;
  }

  /** A 1-D int64 constant (axes, shapes, starts). */
  ints(values: readonly number[]): string {
    return this.constant(values, 'int64');
  }

  /** A scalar (0-d) constant. */
  scalar(value: number, dtype: DType): string {
    return this.constant([value], dtype, []);
  }
}

// (named so the method name `attribute` above stays free)
const attribute_ = attribute;
