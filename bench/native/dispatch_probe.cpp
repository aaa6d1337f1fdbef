// Native floor of the per-op overhead benchmark: the same ops called from C++,
// once through the unboxed C++ API (what Python's bindings use) and once through
// the boxed dispatcher call with an IValue stack (what the Node addon's generic
// `call` uses), plus the addon's tensor-table put/release. Prints one JSON line.
//
// Built by bench/overhead.ts on demand (bench/build/dispatch_probe), single-threaded.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

namespace {

// Best of `repeats` blocks: the machine may be shared, and interference only adds time.
double bestNs(const std::function<void()>& body, int inner, int repeats) {
  for (int i = 0; i < inner; ++i) body();  // warm-up
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) body();
    auto t1 = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / inner);
  }
  return *std::min_element(samples.begin(), samples.end());
}

// The addon's TensorTable in miniature: a slot vector and a free list.
struct Table {
  std::vector<at::Tensor> slots;
  std::vector<int32_t> free;
  int32_t put(at::Tensor t) {
    if (!free.empty()) {
      int32_t id = free.back();
      free.pop_back();
      slots[id] = std::move(t);
      return id;
    }
    slots.push_back(std::move(t));
    return static_cast<int32_t>(slots.size() - 1);
  }
  void release(int32_t id) {
    slots[id] = at::Tensor();
    free.push_back(id);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 41;
  at::set_num_threads(1);
  auto& dispatcher = c10::Dispatcher::singleton();
  auto addOp = dispatcher.findSchemaOrThrow("aten::add", "Tensor");
  auto mulOp = dispatcher.findSchemaOrThrow("aten::mul", "Tensor");
  auto subOp = dispatcher.findSchemaOrThrow("aten::sub", "Tensor");
  auto divOp = dispatcher.findSchemaOrThrow("aten::div", "Tensor");
  auto tanhOp = dispatcher.findSchemaOrThrow("aten::tanh", "");
  const c10::IValue one(c10::Scalar(int64_t{1}));

  at::Tensor x2 = at::randn({2, 2});
  at::Tensor y2 = at::randn({2, 2});
  torch::jit::Stack stack;
  stack.reserve(4);
  Table table;

  auto boxedAdd = [&](const at::Tensor& a, const at::Tensor& b) {
    stack.clear();
    stack.emplace_back(a);
    stack.emplace_back(b);
    stack.push_back(one);
    addOp.callBoxed(stack);
    at::Tensor r = std::move(stack[0]).toTensor();
    stack.clear();
    return r;
  };

  double unboxedTiny = bestNs([&] { at::Tensor r = at::add(x2, y2); }, 5000, repeats);
  double boxedTiny = bestNs([&] { at::Tensor r = boxedAdd(x2, y2); }, 5000, repeats);
  double boxedTableTiny = bestNs(
      [&] {
        int32_t id = table.put(boxedAdd(x2, y2));
        table.release(id);
      },
      5000, repeats);
  double emptyTensorAlloc = bestNs([&] { at::Tensor r = at::empty({2, 2}); }, 5000, repeats);

  at::Tensor a = at::randn({64, 64});
  at::Tensor b = at::randn({64, 64});
  at::Tensor d = at::rand({64, 64}) + 1;
  double unboxedChain = bestNs(
                            [&] {
                              at::Tensor x = a;
                              for (int i = 0; i < 4; ++i) {
                                x = at::add(x, b);
                                x = at::mul(x, b);
                                x = at::sub(x, b);
                                x = at::div(x, d);
                                x = at::tanh(x);
                              }
                            },
                            100, repeats) /
                        20;
  // The same chain with every intermediate kept alive to the end, as one tidy()
  // per chain does on the Node side (Python and the loop above free each at once).
  double unboxedChainKeepAll = bestNs(
                                   [&] {
                                     std::vector<at::Tensor> live;
                                     live.reserve(20);
                                     at::Tensor x = a;
                                     for (int i = 0; i < 4; ++i) {
                                       live.push_back(x = at::add(x, b));
                                       live.push_back(x = at::mul(x, b));
                                       live.push_back(x = at::sub(x, b));
                                       live.push_back(x = at::div(x, d));
                                       live.push_back(x = at::tanh(x));
                                     }
                                   },
                                   100, repeats) /
                               20;
  auto boxed1 = [&](const c10::OperatorHandle& op, const at::Tensor& x) {
    stack.clear();
    stack.emplace_back(x);
    op.callBoxed(stack);
    at::Tensor r = std::move(stack[0]).toTensor();
    stack.clear();
    return r;
  };
  auto boxed2 = [&](const c10::OperatorHandle& op, const at::Tensor& x, const at::Tensor& y, bool alpha) {
    stack.clear();
    stack.emplace_back(x);
    stack.emplace_back(y);
    if (alpha) stack.push_back(one);
    op.callBoxed(stack);
    at::Tensor r = std::move(stack[0]).toTensor();
    stack.clear();
    return r;
  };
  double boxedChain = bestNs(
                          [&] {
                            at::Tensor x = a;
                            for (int i = 0; i < 4; ++i) {
                              x = boxed2(addOp, x, b, true);
                              x = boxed2(mulOp, x, b, false);
                              x = boxed2(subOp, x, b, true);
                              x = boxed2(divOp, x, d, false);
                              x = boxed1(tanhOp, x);
                            }
                          },
                          100, repeats) /
                      20;
  std::printf(
      "{\"unboxedAddTinyNs\": %.1f, \"boxedAddTinyNs\": %.1f, \"boxedAddTinyWithTableNs\": %.1f, "
      "\"emptyTensorAllocNs\": %.1f, \"unboxedChainNsPerOp\": %.1f, \"unboxedChainKeepAllNsPerOp\": %.1f, "
      "\"boxedChainNsPerOp\": %.1f}\n",
      unboxedTiny, boxedTiny, boxedTableTiny, emptyTensorAlloc, unboxedChain, unboxedChainKeepAll, boxedChain);
  return 0;
}
