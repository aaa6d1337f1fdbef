// torch.onnx.export for @epg/torch: traces a function of tensors through the
// operator hook (trace.ts) at two batch sizes, converts the traces into an ONNX
// graph (convert.ts, aten-ops.ts) and writes the model with its weights as
// initializers (in a side file `<model>.data` once they pass 2 GB, the protobuf
// limit). Files are written under temporary names and renamed, so a failed
// export leaves nothing behind.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename } from 'node:path';

import { inferenceMode } from '../autograd.js';
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { ATEN_TO_ONNX } from './aten-ops.js';
import { onnxDtype } from './builder.js';
import { convertTraces, OnnxExportError, type OpMapping } from './convert.js';
import { encodeModel, type ModelMsg, type TensorMsg, type ValueInfoMsg } from './proto.js';
import { traceCalls, type Trace } from './trace.js';

export { OnnxExportError };

/** The ONNX opset the mappings target (LayerNormalization needs 17). */
export const OPSET = 17;
const IR_VERSION = 8;
/** Past this many bytes of initializers the weights go to a side file (protobuf messages stop at 2 GiB). */
export const EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 2 ** 26;

export interface OnnxExportOptions {
  /** Example inputs at a batch size; called at two sizes to find the batch axis. */
  exampleInputs: (batch: number) => Tensor[];
  inputNames: readonly string[];
  outputNames: readonly string[];
  /** The tensors the function reads (its weights), named as in the state dict. */
  namedTensors?: Iterable<readonly [string, Tensor]>;
  /** The two batch sizes traced (default [2, 3]); they must differ. */
  batchSizes?: readonly [number, number];
  docString?: string;
  metadata?: Record<string, string>;
  /** Bytes of initializers past which they are written to `<file>.data` (default just under 2 GiB). */
  externalDataThreshold?: number;
  /** Extra or replacement operator mappings, keyed 'aten::name.overload'. */
  mappings?: ReadonlyMap<string, OpMapping>;
}

export interface OnnxExportReport {
  path: string;
  /** The side file of the weights, or null when they are inside the model. */
  externalData: string | null;
  bytes: number;
  nodes: number;
  initializers: number;
  /** Traced calls mapped to nodes and folded into constants. */
  mappedCalls: number;
  foldedCalls: number;
  inputs: { name: string; dtype: DType; shape: (number | 'batch')[] }[];
  outputs: { name: string; dtype: DType; shape: (number | 'batch')[] }[];
}

function valueInfo(v: { name: string; dtype: DType; shape: (number | 'batch')[] }): ValueInfoMsg {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: onnxDtype(v.dtype),
        shape: { dim: v.shape.map((d) => (d === 'batch' ? { dimParam: 'batch' } : { dimValue: d })) },
      },
    },
  };
}

/** Writes chunks to path through a temporary file renamed into place. */
function writeAtomically(path: string, chunks: readonly Uint8Array[]): void {
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += writeSync(fd, c, off, c.length - off);
    }
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Traces fn and writes it as an ONNX model to path. fn must be a pure function of
 * its inputs (weights read from closures are fine) and run in inference mode;
 * an operator without an ONNX mapping is an OnnxExportError naming it and the
 * line that called it.
 */
export function exportOnnx(fn: (inputs: Tensor[]) => Tensor[], path: string, o: OnnxExportOptions): OnnxExportReport {
  const batchSizes = o.batchSizes ?? [2, 3];
  if (batchSizes[0] === batchSizes[1]) throw new RangeError('onnx: the two traced batch sizes must differ');
  const names = new Map<number, string>();
  for (const [name, t] of o.namedTensors ?? []) names.set(t.id, name);
  const mappings = new Map(ATEN_TO_ONNX);
  for (const [k, v] of o.mappings ?? []) mappings.set(k, v);

  const traces: { trace?: Trace; inputs: Tensor[] }[] = [];
  try {
    for (const b of batchSizes) {
      const entry: { trace?: Trace; inputs: Tensor[] } = { inputs: o.exampleInputs(b) };
      traces.push(entry);
      entry.trace = inferenceMode(() => traceCalls(fn, entry.inputs));
    }
    const graph = convertTraces(traces[0]!.trace!, traces[1]!.trace!, {
      inputNames: o.inputNames,
      outputNames: o.outputNames,
      names,
      batchSizes,
      mappings,
    });
    const initializers: TensorMsg[] = graph.g.initializers;
    const total = initializers.reduce((s, t) => s + (t.rawData?.length ?? 0), 0);
    const threshold = o.externalDataThreshold ?? EXTERNAL_DATA_THRESHOLD;
    const dataPath = `${path}.data`;
    const dataChunks: Uint8Array[] = [];
    if (total > threshold) {
      // The ONNX external-data convention: location (relative to the model), offset, length.
      let offset = 0;
      for (const t of initializers) {
        const raw = t.rawData!;
        if (raw.length < 1024) continue;
        const pad = (64 - (offset % 64)) % 64;
        if (pad) dataChunks.push(new Uint8Array(pad));
        offset += pad;
        dataChunks.push(raw);
        t.externalData = [
          { key: 'location', value: basename(dataPath) },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(raw.length) },
        ];
        t.dataLocation = 1;
        delete t.rawData;
        offset += raw.length;
      }
    }
    const model: ModelMsg = {
      irVersion: IR_VERSION,
      producerName: '@epg/torch',
      producerVersion: '0.1.0',
      ...(o.docString ? { docString: o.docString } : {}),
      opsetImport: [{ domain: '', version: OPSET }],
      metadataProps: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: 'main',
        node: graph.g.nodes,
        initializer: initializers,
        input: graph.inputs.map(valueInfo),
        output: graph.outputs.map(valueInfo),
      },
    };
    const bytes = encodeModel(model);
    if (dataChunks.length) writeAtomically(dataPath, dataChunks);
    try {
      writeAtomically(path, [bytes]);
    } catch (e) {
      if (dataChunks.length) rmSync(dataPath, { force: true });
      throw e;
    }
    return {
      path,
      externalData: dataChunks.length ? dataPath : null,
      bytes: bytes.length + dataChunks.reduce((s, c) => s + c.length, 0),
      nodes: graph.g.nodes.length,
      initializers: initializers.length,
      mappedCalls: graph.mapped,
      foldedCalls: graph.folded,
      inputs: graph.inputs,
      outputs: graph.outputs,
    };
  } finally {
    for (const { trace, inputs } of traces) {
      trace?.release();
      for (const t of inputs) t.dispose();
    }
  }
}
