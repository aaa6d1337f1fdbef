// Process-wide runtime: build information, threads, random generators and
// TorchScript modules; and the addon's entry point.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <atomic>
#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common.h"

namespace epg {
namespace {

napi_value info(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    napi_value o = makeObject(env);
    setProp(env, o, "torchVersion", makeString(env, TORCH_VERSION));
#ifdef EPG_WITH_CUDA
    setProp(env, o, "cudaCompiled", makeBool(env, true));
#else
    setProp(env, o, "cudaCompiled", makeBool(env, false));
#endif
    setProp(env, o, "cudaAvailable", makeBool(env, torch::cuda::is_available()));
    setProp(env, o, "cudaDeviceCount", makeInt(env, static_cast<int64_t>(torch::cuda::device_count())));
    setProp(env, o, "numThreads", makeInt(env, at::get_num_threads()));
    setProp(env, o, "numInteropThreads", makeInt(env, at::get_num_interop_threads()));
    setProp(env, o, "parallelInfo", makeString(env, at::get_parallel_info()));
    setProp(env, o, "config", makeString(env, at::show_config()));
    return o;
  });
}

// setMallocOptions(mmapThreshold, trimThreshold) -> bool: glibc malloc's two
// thresholds (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), in bytes. False
// where the C library is not glibc or it refused a value. The policy (whether,
// and which values) is the caller's.
napi_value setMallocOptions(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t mmapThreshold = getInt(env, a[0], "mmapThreshold");
    int64_t trimThreshold = getInt(env, a[1], "trimThreshold");
    for (int64_t v : {mmapThreshold, trimThreshold})
      if (v < 0 || v > INT_MAX)
        throw ArgError("malloc thresholds: expected 0.." + std::to_string(INT_MAX) + " bytes, got " + std::to_string(v));
#if defined(__GLIBC__)
    bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmapThreshold)) == 1 &&
              mallopt(M_TRIM_THRESHOLD, static_cast<int>(trimThreshold)) == 1;
    return makeBool(env, ok);
#else
    return makeBool(env, false);
#endif
  });
}

napi_value setNumThreads(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t n = getInt(env, a[0], "threads");
    if (n < 1 || n > 4096) throw ArgError("threads: expected 1..4096, got " + std::to_string(n));
    at::set_num_threads(static_cast<int>(n));
    return makeUndefined(env);
  });
}

napi_value manualSeed(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    torch::manual_seed(static_cast<uint64_t>(getInt(env, a[0], "seed")));
    return makeUndefined(env);
  });
}

// generatorDefault(device) -> handle on the device's default generator
napi_value generatorDefault(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    c10::Device dev = getDevice(env, a[0], "device");
    return makeInt(env, generators().put(at::globalContext().defaultGenerator(dev)));
  });
}

// generatorCreate(device, seed) -> handle on a new, independent generator
napi_value generatorCreate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    c10::Device dev = getDevice(env, a[0], "device");
    at::Generator g = at::globalContext().defaultGenerator(dev).clone();
    g.set_current_seed(static_cast<uint64_t>(getInt(env, a[1], "seed")));
    return makeInt(env, generators().put(std::move(g)));
  });
}

napi_value generatorSeed(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::Generator& g = generators().get(getInt(env, a[0], "generator"), "generator");
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(static_cast<uint64_t>(getInt(env, a[1], "seed")));
    return makeUndefined(env);
  });
}

// generatorGetState(handle) -> uint8 tensor id
napi_value generatorGetState(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::Generator& g = generators().get(getInt(env, a[0], "generator"), "generator");
    std::lock_guard<std::mutex> lock(g.mutex());
    return putTensor(env, g.get_state());
  });
}

napi_value generatorSetState(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    at::Generator& g = generators().get(getInt(env, a[0], "generator"), "generator");
    const at::Tensor& state = getTensor(env, a[1], "state");
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
    return makeUndefined(env);
  });
}

napi_value generatorDispose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    generators().release(getInt(env, a[0], "generator"));
    return makeUndefined(env);
  });
}

HandleTable<torch::jit::Module>& modules() {
  static auto* table = new HandleTable<torch::jit::Module>();  // never destroyed: see tensors()
  return *table;
}

// jitLoad(path, device?) -> module handle
napi_value jitLoad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    std::string path = getString(env, a[0], "path");
    std::optional<c10::Device> dev;
    if (a.argc > 1 && !isNullish(env, a[1])) dev = getDevice(env, a[1], "device");
    torch::jit::Module m;
    try {
      m = torch::jit::load(path, dev);
    } catch (const c10::Error& e) {
      throw TorchError("cannot load TorchScript module '" + path + "': " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw TorchError("cannot load TorchScript module '" + path + "': " + e.what());
    }
    m.eval();
    return makeInt(env, modules().put(std::move(m)));
  });
}

// JS values arrive untyped: arrays as tuples, integral numbers as ints. Where
// the method's schema says List[T] or float, convert them to that (a tuple
// would not be accepted for a List argument, nor an int for a float).
c10::IValue coerce(c10::IValue v, const c10::TypePtr& type) {
  using c10::TypeKind;
  switch (type->kind()) {
    case TypeKind::OptionalType:
      return v.isNone() ? v : coerce(std::move(v), type->castRaw<c10::OptionalType>()->getElementType());
    case TypeKind::FloatType:
      return v.isInt() ? c10::IValue(static_cast<double>(v.toInt())) : v;
    case TypeKind::ListType: {
      if (!v.isTuple()) return v;
      const c10::TypePtr& elem = type->castRaw<c10::ListType>()->getElementType();
      c10::impl::GenericList list(elem);
      for (const auto& e : v.toTupleRef().elements()) {
        c10::IValue item = coerce(e, elem);
        // A list does not check its elements: leave a mismatch for the
        // method's own argument check to report.
        if (!item.type()->isSubtypeOf(*elem)) return v;
        list.push_back(std::move(item));
      }
      return list;
    }
    case TypeKind::TupleType: {
      if (!v.isTuple()) return v;
      const auto& types = type->castRaw<c10::TupleType>()->elements();
      const auto& items = v.toTupleRef().elements();
      if (types.size() != items.size()) return v;
      std::vector<c10::IValue> out;
      for (size_t i = 0; i < items.size(); ++i) out.push_back(coerce(items[i], types[i]));
      return c10::ivalue::Tuple::create(std::move(out));
    }
    default:
      return v;
  }
}

// jitCall(handle, method, inputs[]) -> result, tensors as {tensor: id}
napi_value jitCall(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    // A copy (a reference-counted handle): converting the inputs can run JS
    // (getters) that disposes the module.
    torch::jit::Module m = modules().get(getInt(env, a[0], "module"), "module");
    std::string method = getString(env, a[1], "method");
    uint32_t n = nullableListLength(env, a[2], "inputs");
    std::vector<c10::IValue> inputs;
    for (uint32_t i = 0; i < n; ++i) inputs.push_back(toIValueUntyped(env, element(env, a[2], i)));
    auto fn = m.find_method(method);
    if (!fn) throw ArgError("TorchScript module has no method '" + method + "'");
    const auto& params = fn->function().getSchema().arguments();  // params[0] is self
    for (size_t i = 0; i < inputs.size() && i + 1 < params.size(); ++i)
      inputs[i] = coerce(std::move(inputs[i]), params[i + 1].type());
    c10::IValue result;
    try {
      result = (*fn)(std::move(inputs));
    } catch (const c10::Error& e) {
      throw TorchError("TorchScript method '" + method + "': " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      // e.g. torch::jit::JITException, from a `raise` in the script.
      throw TorchError("TorchScript method '" + method + "': " + e.what());
    }
    return fromIValue(env, result);
  });
}

napi_value jitTo(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    torch::jit::Module& m = modules().get(getInt(env, a[0], "module"), "module");
    m.to(getDevice(env, a[1], "device"));
    return makeUndefined(env);
  });
}

napi_value jitDispose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    modules().release(getInt(env, a[0], "module"));
    return makeUndefined(env);
  });
}

// The tables of tensors and handles are process-wide and unsynchronised, and
// zero-copy tensors hold references that belong to one JS environment: the
// addon serves the first environment (thread) that loads it, and refuses the
// others (worker_threads) instead of racing with it.
std::atomic<napi_env> owner{nullptr};

napi_value init(napi_env env, napi_value exports) {
  napi_env expected = nullptr;
  if (!owner.compare_exchange_strong(expected, env) && expected != env) {
    napi_throw_error(env, "EPG_NATIVE",
                     "@epg/torch can be used from one JS thread per process: it is already loaded by another "
                     "thread (worker_threads). Use it from that thread, or in a child process");
    return nullptr;
  }
  try {
    for (auto fns : {opsExports(), tensorExports(), autogradExports(), runtimeExports(), cudaExports(), distExports()})
      registerAll(env, exports, fns);
  } catch (const std::exception& e) {
    napi_throw_error(env, "EPG_NATIVE", e.what());
  }
  return exports;
}

}  // namespace

std::vector<Export> runtimeExports() {
  return {{"info", info},
          {"setNumThreads", setNumThreads},
          {"setMallocOptions", setMallocOptions},
          {"manualSeed", manualSeed},
          {"generatorDefault", generatorDefault},
          {"generatorCreate", generatorCreate},
          {"generatorSeed", generatorSeed},
          {"generatorGetState", generatorGetState},
          {"generatorSetState", generatorSetState},
          {"generatorDispose", generatorDispose},
          {"jitLoad", jitLoad},
          {"jitCall", jitCall},
          {"jitTo", jitTo},
          {"jitDispose", jitDispose}};
}

}  // namespace epg

NAPI_MODULE(NODE_GYP_MODULE_NAME, epg::init)
