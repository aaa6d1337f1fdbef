export * from './config.js';
export * from './checkpoint.js';
export * from './stages.js';
export * from './trainer.js';
export * from './data.js';
export * from './seeds.js';
export { TensorBoardWriter, JsonlWriter, Progress, crc32c } from './logging.js';
