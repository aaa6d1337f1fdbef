#!/usr/bin/env bash
# The GPU checks, as one script for the lent GPU machine (which has CUDA, PyTorch,
# cmake and g++, but no Node.js and no npm). Prepare and send it from the project
# root of a machine where `npm run build` has run:
#
#   bash ../shared/device/pack.sh            # writes .device/ (node, Node-API headers)
#   mkdir -p .device/fashion-mnist && cp /usr/share/datasets/fashion-mnist/t10k-* .device/fashion-mnist/
#   python3 scripts/cifar-subset.py ../shared/datasets/cifar10-jpeg.zip .device/cifar10-small.zip 200 100
#   run(carry=[".device", "packages/torch/dist", "packages/epg/dist", "bench/dist",
#              "node_modules/jpeg-js", "node_modules/pngjs"],
#       command="bash scripts/device-run.sh [quick]")
#
# It builds the addon against the machine's CUDA libtorch, runs the GPU tests and
# the GPU benchmarks (Node vs PyTorch eager and torch.compile, same GPU, same run),
# and leaves logs and bench/results in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
out=${OUT:-/tmp/device-out}
mkdir -p "$out"
# shellcheck disable=SC1091
source .device/setup.sh 2>&1 | tee "$out/setup.log"
# The workspace links npm would make.
mkdir -p node_modules/@epg
ln -sfn ../../packages/torch node_modules/@epg/torch
ln -sfn ../../bench node_modules/@epg/bench
ln -sfn ../packages/epg node_modules/epg

step() { echo "== $*" | tee -a "$out/steps.log"; }

step "build the addon (CUDA from the machine's toolkit)"
node packages/torch/scripts/build-native.mjs > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
node -e "import('@epg/torch').then((t) => console.log(JSON.stringify(t.info())))" | tee "$out/info.json"

# The training tests read Fashion-MNIST, which the GPU machine lacks: the test
# split (4 MB, carried in .device/) stands in for both splits.
fm=/usr/share/datasets/fashion-mnist
if [ ! -e "$fm/train-images-idx3-ubyte.gz" ] && [ -d .device/fashion-mnist ]; then
  mkdir -p "$fm"
  for kind in images-idx3 labels-idx1; do
    cp ".device/fashion-mnist/t10k-$kind-ubyte.gz" "$fm/"
    ln -sf "t10k-$kind-ubyte.gz" "$fm/train-$kind-ubyte.gz"
  done
fi

step "GPU tests"
node --test packages/torch/dist/test/cuda.test.js packages/torch/dist/test/graphed.test.js \
  packages/torch/dist/test/dist.test.js > "$out/tests.log" 2>&1
grep -E '^# (pass|fail|skipped)' "$out/tests.log" | tee -a "$out/steps.log"
step "GPU training tests (graphed dm/cm steps on CUDA)"
node --test --test-name-pattern='GPU|train pretrain' packages/epg/dist/test/train.test.js > "$out/train-tests.log" 2>&1
grep -E '^# (pass|fail|skipped)|^not ok' "$out/train-tests.log" | tee -a "$out/steps.log"

step "demo --gpu --quick (CIFAR-10, 3000-image subset carried in .device/)"
if [ -f .device/cifar10-small.zip ]; then
  EPG_CIFAR10=.device/cifar10-small.zip node packages/epg/dist/src/cli.js demo --gpu --quick --out "$out/demo-gpu" \
    > "$out/demo-gpu.log" 2>&1 && echo "demo ok" | tee -a "$out/steps.log" || tail -20 "$out/demo-gpu.log"
fi

# MFU against 989 TFLOP/s, the H200's dense bf16 peak (the EPG cases run under bf16 autocast).
step "benchmarks on cuda"
if [ "$quick" = quick ]; then
  node bench/dist/run.js matmul epg --device cuda --quick --peak-tflops 989 > "$out/bench.log" 2>&1
else
  node bench/dist/run.js matmul conv vit epg --device cuda --peak-tflops 989 > "$out/bench.log" 2>&1
fi
tail -40 "$out/bench.log"
cp -r bench/results "$out/" 2>/dev/null || true
step "done"
