// torch.optim and friends: optimizers, LR schedules, EMA, clipping, loss scaling.
export { Optimizer, type OptimizerState, type ParamGroup, type ParamsInput, type GroupHyper } from './optimizer.js';
export { AdamW, type AdamWOptions, type AdamWHyper } from './adamw.js';
export { SGD, type SGDOptions, type SGDHyper } from './sgd.js';
export * from './schedules.js';
export { EMA } from './ema.js';
export { clipGradNorm_, gradNorm } from './clip.js';
export { GradScaler, type GradScalerOptions } from './scaler.js';
export {
  PowerEMA,
  type PowerEMAState,
  type PowerProfile,
  MAX_STD_REL,
  WeightedSum,
  checkStdRel,
  expToStd,
  powerFunctionBeta,
  powerFunctionCorrelation,
  solveLinear,
  solvePosthocCoefficients,
  stdToExp,
} from './phema.js';
