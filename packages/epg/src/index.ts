// epg: the EPG method (arXiv 2510.12586) on @epg/torch: noise process and
// samplers, models and presets, losses; data, training, evaluation and the CLI
// land with their issues.
export * as edm from './diffusion/edm.js';
export * as schedules from './diffusion/schedules.js';
export * from './diffusion/denoiser.js';
export * from './diffusion/samplers.js';
export * from './diffusion/sample-noise.js';
export { rankBatches, type RankBatch } from './sample-parallel.js';
export * from './models/vit.js';
export * from './models/presets.js';
export * from './models/checkpoints.js';
export * from './models/official-folders.js';
export { ntXent } from './losses/ntxent.js';
export * from './losses/objectives.js';
export { runDemo } from './demo.js';
export * as data from './data/index.js';
export * as evaluation from './eval/index.js';
export * as train from './train/index.js';
