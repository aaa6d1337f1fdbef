#!/usr/bin/env node
// Builds the native addon (build/epg_torch.node) against libtorch.
//
// libtorch is found, in order, from:
//   1. $LIBTORCH       a libtorch distribution (folder with include/ and lib/)
//   2. $Torch_DIR      its CMake folder (<root>/share/cmake/Torch)
//   3. the Python `torch` package of `python3` (pip install torch)
// Node-API headers come from $NODE_API_INCLUDE or the npm package node-api-headers.
// CUDA support is compiled in when libtorch has CUDA libraries and the CUDA
// runtime headers are found ($CUDA_HOME, /usr/local/cuda, or pip's nvidia wheels).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = join(pkg, 'build');

function fail(message) {
  console.error(`\n@epg/torch build: ${message}\n`);
  process.exit(1);
}

function pythonTorchRoot() {
  const r = spawnSync('python3', ['-c', 'import os, torch; print(os.path.dirname(torch.__file__))'], {
    encoding: 'utf8',
  });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function findTorchRoot() {
  if (process.env.LIBTORCH) return { root: resolve(process.env.LIBTORCH), from: '$LIBTORCH' };
  if (process.env.Torch_DIR) return { root: resolve(process.env.Torch_DIR, '../../..'), from: '$Torch_DIR' };
  const py = pythonTorchRoot();
  if (py) return { root: py, from: 'python3 torch' };
  return undefined;
}

function cxx11Abi(root) {
  const cfg = join(root, 'share/cmake/Torch/TorchConfig.cmake');
  if (existsSync(cfg)) {
    const m = readFileSync(cfg, 'utf8').match(/_GLIBCXX_USE_CXX11_ABI=(\d)/);
    if (m) return m[1];
  }
  return '1';
}

function cudaIncludeDirs(root) {
  const hasCudaLibs = existsSync(join(root, 'lib/libc10_cuda.so'));
  if (!hasCudaLibs || process.env.EPG_NO_CUDA === '1') return undefined;
  const candidates = [];
  if (process.env.CUDA_HOME) candidates.push(join(process.env.CUDA_HOME, 'include'));
  candidates.push('/usr/local/cuda/include');
  const nvidia = join(root, '..', 'nvidia');
  if (existsSync(nvidia)) {
    for (const d of readdirSync(nvidia)) candidates.push(join(nvidia, d, 'include'));
  }
  // crt/host_config.h ships with nvcc: pip's CUDA runtime wheel alone is not enough.
  const complete = (d) => existsSync(join(d, 'cuda_runtime_api.h')) && existsSync(join(d, 'crt/host_config.h'));
  const found = candidates.filter(complete);
  if (found.length === 0) {
    console.warn('@epg/torch: libtorch has CUDA, but no CUDA toolkit headers were found: building without CUDA.');
    return undefined;
  }
  // The other wheels' headers (cuBLAS, cuDNN, ...) may be needed by ATen's CUDA headers too.
  return [...new Set([...found, ...candidates.filter((d) => existsSync(d))])];
}

// c10d's process groups are compiled in when libtorch has its headers (Linux
// builds with USE_DISTRIBUTED); NCCL when CUDA is on and nccl.h is found.
function distributed(root, cuda) {
  if (process.env.EPG_NO_DIST === '1') return { dist: false, nccl: false };
  const dist = existsSync(join(root, 'include/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp'));
  const nccl = dist && !!cuda && cuda.some((d) => existsSync(join(d, 'nccl.h')));
  return { dist, nccl };
}

function nodeApiInclude() {
  if (process.env.NODE_API_INCLUDE) return process.env.NODE_API_INCLUDE;
  for (const base of [join(pkg, 'node_modules'), join(pkg, '../../node_modules')]) {
    const d = join(base, 'node-api-headers/include');
    if (existsSync(join(d, 'node_api.h'))) return d;
  }
  return undefined;
}

function main() {
  const torch = findTorchRoot();
  if (!torch || !existsSync(join(torch.root, 'include/ATen/ATen.h'))) {
    fail(
      'libtorch not found. Install PyTorch (`python3 -m pip install torch`), or set LIBTORCH to an ' +
        'unpacked libtorch folder (with include/ and lib/), or Torch_DIR to its share/cmake/Torch.' +
        (torch ? ` (${torch.from} pointed at ${torch.root}, which has no include/ATen/ATen.h)` : ''),
    );
  }
  const napiInclude = nodeApiInclude();
  if (!napiInclude) fail('Node-API headers not found: run `npm install` (package node-api-headers).');
  const cuda = cudaIncludeDirs(torch.root);
  const dist = distributed(torch.root, cuda);
  const args = [
    '-S',
    pkg,
    '-B',
    buildDir,
    `-DTORCH_ROOT=${torch.root}`,
    `-DNODE_API_INCLUDE=${napiInclude}`,
    `-DTORCH_CXX11_ABI=${cxx11Abi(torch.root)}`,
    `-DEPG_WITH_CUDA=${cuda ? 'ON' : 'OFF'}`,
    `-DCUDA_INCLUDE_DIRS=${(cuda ?? []).join(';')}`,
    `-DEPG_WITH_DIST=${dist.dist ? 'ON' : 'OFF'}`,
    `-DEPG_WITH_NCCL=${dist.nccl ? 'ON' : 'OFF'}`,
    '-DCMAKE_BUILD_TYPE=Release',
  ];
  mkdirSync(buildDir, { recursive: true });
  console.log(
    `@epg/torch: libtorch from ${torch.from}: ${torch.root} (CUDA ${cuda ? 'on' : 'off'}, c10d ${dist.dist ? 'on' : 'off'}, NCCL ${dist.nccl ? 'on' : 'off'})`,
  );
  execFileSync('cmake', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const jobs = String(Math.max(1, Math.min(cpus().length, 8)));
  execFileSync('cmake', ['--build', buildDir, '-j', jobs], { stdio: 'inherit' });
}

main();
