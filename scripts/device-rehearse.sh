#!/usr/bin/env bash
# Rehearses scripts/device-run.sh on this CPU machine before device time is spent
# on it: the same files travel (the tracked tree and the carried paths, no other
# node_modules), and python3 is the GPU machine's PyTorch version, so a build or
# API break against that libtorch shows here. GPU tests skip and the CUDA steps
# stop with their messages; everything else runs as it will there.
#
#   bash scripts/device-rehearse.sh [TORCH_VERSION]     # default 2.11.0, the H200 machine's (KINDS.md)
#
# The first run downloads that torch wheel from PyPI (~530 MB, no dependencies)
# into a virtual environment under ~/.cache/epg that borrows this machine's
# NVIDIA wheels (plus the ones that version needs and this one lacks).
# Needs `npm run build` and the .device/ folder of the header of device-run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-2.11.0}
cache=${EPG_CACHE:-$HOME/.cache/epg}
venv="$cache/torch-$version"

# The venv borrows this machine's site-packages: check the version, or a half-made venv would rehearse against 2.15.
if ! "$venv/bin/python" -c "import sys, torch; sys.exit(not torch.__version__.startswith('$version'))" 2>/dev/null; then
  echo "rehearse: making $venv (torch $version from PyPI)"
  rm -rf "$venv"
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" download -q --no-deps --only-binary=:all: "torch==$version" -d "$venv/wheels"
  "$venv/bin/pip" install -q --no-deps --no-compile "$venv"/wheels/torch-*.whl
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  system=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  # This machine's NVIDIA wheels, linked file by file so that missing ones can be added.
  (cd "$system" && find nvidia -type d) | while read -r d; do mkdir -p "$site/$d"; done
  (cd "$system" && find nvidia ! -type d) | while read -r f; do ln -sfn "$system/$f" "$site/$f"; done
  # libcurand: torch 2.11 loads it, 2.15 does not.
  if ! ls "$site"/nvidia/*/lib/libcurand.so.* >/dev/null 2>&1; then
    "$venv/bin/pip" download -q --no-deps --only-binary=:all: nvidia-curand -d "$venv/wheels"
    "$venv/bin/python" -m zipfile -e "$venv"/wheels/nvidia_curand-*.whl "$venv/curand"
    for f in "$venv"/curand/nvidia/*/lib/libcurand.so.*; do
      sub=$(basename "$(dirname "$(dirname "$f")")")
      mkdir -p "$site/nvidia/$sub/lib" && ln -sfn "$f" "$site/nvidia/$sub/lib/"
    done
  fi
  "$venv/bin/python" -c 'import torch; print("rehearse: python3 is torch", torch.__version__)'
fi

[ -f .device/setup.sh ] || { echo "rehearse: no .device/: run the preparation in the header of scripts/device-run.sh" >&2; exit 1; }
sim=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$sim"' EXIT
# What the device tool sends: tracked files and untracked ones git does not ignore (that exist).
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -e "$f" ] && cp --parents "$f" "$sim/"; done
cp -r --parents packages/torch/dist packages/epg/dist bench/dist node_modules/jpeg-js node_modules/pngjs .device "$sim/"
echo "rehearse: $(du -sh "$sim" | cut -f1) would travel (the limit is 64 MiB); results in $out"
(cd "$sim" && unset LIBTORCH Torch_DIR && PATH="$venv/bin:$PATH" OUT="$out" bash scripts/device-run.sh quick)
ls -la "$out"
