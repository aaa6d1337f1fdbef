// torch.distributed for TypeScript: process groups over c10d, data-parallel
// training (DistributedDataParallel) and the torchrun environment contract.
export * from './env.js';
export * from './group.js';
export * from './ddp.js';
export * from './launch.js';
