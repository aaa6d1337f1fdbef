#!/usr/bin/env node
// The `epg` command line. Subcommands land with their issues; today: info, demo.
import * as torch from '@epg/torch';

import { fitMlpDemo } from './demo.js';

const USAGE = `usage: epg <command> [options]

commands:
  info [--json]   the libtorch build, devices and threads
  demo            the end-to-end example (today: fit a small MLP with autograd)
`;

function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  switch (cmd) {
    case 'info': {
      const i = torch.info();
      if (rest.includes('--json')) console.log(JSON.stringify(i, null, 2));
      else
        console.log(
          `libtorch ${i.torchVersion} (${i.cudaCompiled ? 'CUDA' : 'CPU'} addon), ` +
            `CUDA ${i.cudaAvailable ? `${i.cudaDeviceCount} device(s)` : 'not available'}, ${i.numThreads} threads`,
        );
      return 0;
    }
    case 'demo': {
      if (rest.includes('--help')) {
        console.log('usage: epg demo [--steps N]\n  fits a small MLP to sin(3x) with autograd and reports the loss');
        return 0;
      }
      const i = rest.indexOf('--steps');
      const steps = i >= 0 ? Number(rest[i + 1]) : 2000;
      if (!Number.isInteger(steps) || steps < 1) {
        console.error(`epg demo: --steps must be a positive integer, got ${rest[i + 1]}`);
        return 2;
      }
      const r = fitMlpDemo(steps);
      console.log(
        `demo: mse ${r.initialLoss.toExponential(3)} -> ${r.finalLoss.toExponential(3)} in ${r.steps} steps ` +
          `(${r.seconds.toFixed(2)} s); live tensors ${r.liveTensorsBefore} -> ${r.liveTensorsAfter}`,
      );
      return r.finalLoss < r.initialLoss / 10 ? 0 : 1;
    }
    default:
      console.error(`epg: unknown command '${cmd}'\n\n${USAGE}`);
      return 2;
  }
}

process.exitCode = main(process.argv.slice(2));
