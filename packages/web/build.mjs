// Bundles the demo page: src/app.ts (with packages/epg/src/export-io.ts) → dist/app.js,
// and copies index.html. onnxruntime-web is not bundled: `epg serve` serves its dist
// folder at /ort/, from where it loads its WebAssembly (and WebGPU) files.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(join(here, 'dist'), { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'app.ts')],
  outfile: join(here, 'dist', 'app.js'),
  bundle: true,
  format: 'esm',
  target: 'es2022',
  external: ['/ort/*'],
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(here, 'dist', 'index.html'));
console.log('web: built dist/app.js and dist/index.html');
