// ONNX export (torch.onnx.export's counterpart): trace a function of tensors, write an ONNX model.
export { exportOnnx, OnnxExportError, OPSET, EXTERNAL_DATA_THRESHOLD } from './export.js';
export type { OnnxExportOptions, OnnxExportReport } from './export.js';
export type { MapContext, OpMapping } from './convert.js';
export { ATEN_TO_ONNX } from './aten-ops.js';
export { decodeModel } from './proto.js';
export { traceCalls } from './trace.js';
export type { Trace, TracedCall } from './trace.js';
