// Checkpoint IO: safetensors (read and write), PyTorch .pt import (torch.save's
// zip format, through a safe unpickler), the ZIP reader under it, and the
// atomic writes every file writer uses.
export { AtomicFile, writeFileAtomic, writeFileSynced, writeDirAtomic } from './atomic.js';
export { readAt, writeAll } from './fs.js';
export { CheckpointError } from './errors.js';
export {
  saveSafetensors,
  loadSafetensors,
  readSafetensorsHeader,
  SafetensorsFile,
  MAX_HEADER_BYTES,
  type SafetensorsDType,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
  type LoadOptions as SafetensorsLoadOptions,
} from './safetensors.js';
export { crc32 } from './crc32.js';
export { ZipReader, type ZipEntry, type ZipReadOptions } from './zip.js';
export { loadPt, loadStateDict, type PtLoadOptions, type StateDictOptions, type PySlice } from './torch-load.js';
export { unpickle, PickleError, PyDict, PyCallable, type UnpickleOptions } from './pickle.js';
