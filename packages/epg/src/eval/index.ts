// Evaluation (spec §8): the FID Inception network, FID / precision-recall /
// KID, NumPy .npz statistics and sample batches in the ADM evaluator's format,
// and runEval behind `epg eval`.
export * from './inception.js';
export * from './metrics.js';
export * from './npz.js';
export * from './images.js';
export * from './reference.js';
export * from './run.js';
export * from './patch-edges.js';
