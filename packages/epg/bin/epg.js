#!/usr/bin/env node
// The `epg` command (npx epg). A committed file, so that npm links the bin at
// `npm ci` even before the TypeScript is built (npm skips a bin whose file is
// missing, and dist/ does not exist on a fresh clone); it loads the built CLI.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('epg: the TypeScript is not built; run `npm run setup` (or `npx tsc -b packages/torch packages/epg`)');
  process.exit(1);
}
await import(cli.href);
