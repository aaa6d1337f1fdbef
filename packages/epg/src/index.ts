// epg: the EPG method, data, evaluation, training and CLI (in progress; see the
// issues). For now it holds the end-to-end example that `npm run demo` runs.
export { fitMlpDemo, type MlpDemoResult } from './demo.js';
