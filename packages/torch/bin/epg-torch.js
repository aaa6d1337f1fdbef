#!/usr/bin/env node
// epg-torch info [--json]: the libtorch in use, its build and devices.
import { info } from '../dist/src/index.js';

const args = process.argv.slice(2);
const cmd = args[0] ?? 'info';
if (cmd !== 'info' || args.includes('--help')) {
  console.log('usage: epg-torch info [--json]\n  prints the libtorch version, build (CPU/CUDA), devices and threads');
  process.exit(cmd === 'info' || args.includes('--help') ? 0 : 2);
}
const i = info();
if (args.includes('--json')) {
  console.log(JSON.stringify(i, null, 2));
} else {
  console.log(`libtorch     ${i.torchVersion}`);
  console.log(`build        ${i.cudaCompiled ? 'CUDA' : 'CPU'} (addon)`);
  console.log(`cuda         ${i.cudaAvailable ? `available, ${i.cudaDeviceCount} device(s)` : 'not available'}`);
  console.log(`threads      ${i.numThreads} intra-op, ${i.numInteropThreads} inter-op`);
}
