// The data pipeline (spec §1): image codecs, datasets (Fashion-MNIST IDX,
// ImageFolder directories and zips, packed shards), the ADM centre crop,
// normalisation, batched augmentations and the Loader.
export * from './types.js';
export * from './codecs.js';
export * from './preprocess.js';
export * from './idx.js';
export * from './folder.js';
export { decodeItem, type DecodeSpec } from './folder-source.js';
export * from './shards.js';
export * from './normalize.js';
export * from './augment.js';
export * from './grid.js';
export { BatchReader, DecodePool, defaultNumWorkers, type RawBatch, type ReadMode } from './pool.js';
export * from './loader.js';
