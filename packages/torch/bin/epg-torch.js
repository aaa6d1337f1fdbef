#!/usr/bin/env node
// epg-torch info [--json]: the libtorch in use, its build and devices.
// epg-torch launch --nproc-per-node N ... <script.js|program> [args]: a data-parallel job (torchrun's contract).
import { cli, dist, info } from '../dist/src/index.js';

const USAGE = `usage: epg-torch info [--json]
  prints the libtorch version, build (CPU/CUDA), devices and threads
${cli.formatHelp(dist.launchCommand('epg-torch'))}`;

const args = process.argv.slice(2);
const cmd = args[0] ?? 'info';
if (cmd === 'launch') {
  let parsed;
  try {
    parsed = dist.parseLaunchArgs(args.slice(1));
  } catch (e) {
    console.error(`epg-torch launch: ${e.message}\n\n${USAGE}`);
    process.exit(e instanceof cli.UsageError ? 2 : 1);
  }
  if (parsed === null) {
    console.log(USAGE);
    process.exit(0);
  }
  dist.launch(parsed).then(
    (r) => process.exit(r.exitCode),
    (e) => {
      console.error(`epg-torch launch: ${e.message}`);
      process.exit(1);
    },
  );
} else if (cmd !== 'info' || args.includes('--help')) {
  console.log(USAGE);
  process.exit(cmd === 'info' || args.includes('--help') ? 0 : 2);
} else {
  const i = info();
  if (args.includes('--json')) {
    console.log(JSON.stringify(i, null, 2));
  } else {
    console.log(`libtorch     ${i.torchVersion}`);
    console.log(`build        ${i.cudaCompiled ? 'CUDA' : 'CPU'} (addon)`);
    console.log(`cuda         ${i.cudaAvailable ? `available, ${i.cudaDeviceCount} device(s)` : 'not available'}`);
    console.log(
      `c10d         ${dist.isAvailable() ? `Gloo${dist.isNcclAvailable() ? ', NCCL' : ''}` : 'not compiled'}`,
    );
    console.log(`threads      ${i.numThreads} intra-op, ${i.numInteropThreads} inter-op`);
  }
}
