// The checkpoint format moved to ../checkpoint.ts (sampling reads it without
// the trainer); this re-export keeps the train/ imports working.
export * from '../checkpoint.js';
