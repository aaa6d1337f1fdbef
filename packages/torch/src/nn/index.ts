// torch.nn: modules, layers and initialisers.
export { Module, StateDictError, type Layer, type LoadResult } from './module.js';
export * from './layers.js';
export * as init from './init.js';
