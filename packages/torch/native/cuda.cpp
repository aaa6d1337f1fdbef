// CUDA runtime services: synchronisation, caching-allocator statistics, streams
// and CUDA graphs. Compiled in full only against a CUDA build of libtorch
// (EPG_WITH_CUDA); otherwise every entry point reports that CUDA is absent.
#include <torch/cuda.h>

#include "common.h"

#ifdef EPG_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace epg {
namespace {

void requireCuda() {
  if (!torch::cuda::is_available())
    throw ArgError("CUDA is not available (no GPU, or libtorch/addon built without CUDA)");
}

napi_value cudaSynchronize(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t dev = a.argc > 0 && !isNullish(env, a[0]) ? getInt(env, a[0], "device") : -1;
    if (dev < -1 || dev > 127) throw ArgError("device: no CUDA device " + std::to_string(dev));
    if (!torch::cuda::is_available()) return makeUndefined(env);
    torch::cuda::synchronize(dev);
    return makeUndefined(env);
  });
}

#ifdef EPG_WITH_CUDA

c10::DeviceIndex deviceIndex(napi_env env, napi_value v) {
  if (v == nullptr || isNullish(env, v)) return c10::cuda::current_device();
  int64_t d = getInt(env, v, "device");
  if (d < 0 || d >= c10::cuda::device_count())
    throw ArgError("device: no CUDA device " + std::to_string(d));
  return static_cast<c10::DeviceIndex>(d);
}

// setDevice(device): the current CUDA device of this thread (one GPU per process
// in data-parallel runs, so that handles and caches go to that GPU).
napi_value cudaSetDevice(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    requireCuda();
    if (a.argc < 1 || isNullish(env, a[0])) throw ArgError("setDevice: expected a device index");
    c10::cuda::set_device(deviceIndex(env, a[0]));
    return makeUndefined(env);
  });
}

// currentDevice() -> the current CUDA device index of this thread.
napi_value cudaCurrentDevice(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    requireCuda();
    return makeInt(env, static_cast<int64_t>(c10::cuda::current_device()));
  });
}

// memoryStats(device?) -> {allocated, allocatedPeak, reserved, reservedPeak, numAllocRetries, numOoms}
napi_value cudaMemoryStats(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    requireCuda();
    auto dev = deviceIndex(env, a[0]);
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
    constexpr size_t all = 0;  // StatType::AGGREGATE
    napi_value o = makeObject(env);
    setProp(env, o, "allocatedBytes", makeDouble(env, stats.allocated_bytes[all].current));
    setProp(env, o, "allocatedBytesPeak", makeDouble(env, stats.allocated_bytes[all].peak));
    setProp(env, o, "reservedBytes", makeDouble(env, stats.reserved_bytes[all].current));
    setProp(env, o, "reservedBytesPeak", makeDouble(env, stats.reserved_bytes[all].peak));
    setProp(env, o, "numAllocRetries", makeDouble(env, stats.num_alloc_retries));
    setProp(env, o, "numOoms", makeDouble(env, stats.num_ooms));
    return o;
  });
}

napi_value cudaResetPeakStats(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    requireCuda();
    c10::cuda::CUDACachingAllocator::resetPeakStats(deviceIndex(env, a[0]));
    return makeUndefined(env);
  });
}

napi_value cudaEmptyCache(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    requireCuda();
    c10::cuda::CUDACachingAllocator::emptyCache();
    return makeUndefined(env);
  });
}

// Never destroyed (see tensors() in common.cpp): CUDA objects must not be
// released during static destruction, after the CUDA runtime has shut down.
HandleTable<c10::cuda::CUDAStream>& streams() {
  static auto* table = new HandleTable<c10::cuda::CUDAStream>();
  return *table;
}

// streamCreate(device?, highPriority?) -> handle of a pooled stream
napi_value streamCreate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    requireCuda();
    bool high = a.argc > 1 && !isNullish(env, a[1]) && getBool(env, a[1], "highPriority");
    return makeInt(env, streams().put(c10::cuda::getStreamFromPool(high, deviceIndex(env, a[0]))));
  });
}

napi_value streamCurrent(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    requireCuda();
    return makeInt(env, streams().put(c10::cuda::getCurrentCUDAStream(deviceIndex(env, a[0]))));
  });
}

// streamSetCurrent(handle) -> handle of the stream that was current before
napi_value streamSetCurrent(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    auto& s = streams().get(getInt(env, a[0], "stream"), "stream");
    auto prev = c10::cuda::getCurrentCUDAStream(s.device_index());
    c10::cuda::setCurrentCUDAStream(s);
    return makeInt(env, streams().put(prev));
  });
}

napi_value streamSynchronize(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    streams().get(getInt(env, a[0], "stream"), "stream").synchronize();
    return makeUndefined(env);
  });
}

// streamWait(waiter, waited): the waiter stream waits for work queued so far on waited.
napi_value streamWait(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    auto& waiter = streams().get(getInt(env, a[0], "stream"), "stream");
    auto& waited = streams().get(getInt(env, a[1], "other"), "other");
    c10::Event ev(c10::DeviceType::CUDA);
    ev.record(waited.unwrap());
    ev.block(waiter.unwrap());
    return makeUndefined(env);
  });
}

napi_value streamDispose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    streams().release(getInt(env, a[0], "stream"));
    return makeUndefined(env);
  });
}

// CUDA graphs. Capture runs on a side stream (capture on the legacy default
// stream is not allowed), which becomes current between begin and end.
struct Graph {
  std::unique_ptr<at::cuda::CUDAGraph> graph = std::make_unique<at::cuda::CUDAGraph>();
  std::optional<c10::cuda::CUDAStream> previous;
};

HandleTable<Graph>& graphs() {
  static auto* table = new HandleTable<Graph>();
  return *table;
}

napi_value graphCreate(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    requireCuda();
    return makeInt(env, graphs().put(Graph()));
  });
}

napi_value graphCaptureBegin(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    Graph& g = graphs().get(getInt(env, a[0], "graph"), "graph");
    if (g.previous) throw ArgError("graph is already capturing");
    auto side = c10::cuda::getStreamFromPool();
    // The side stream must see everything queued on the current stream so far.
    c10::Event ev(c10::DeviceType::CUDA);
    ev.record(c10::cuda::getCurrentCUDAStream().unwrap());
    ev.block(side.unwrap());
    g.previous = c10::cuda::getCurrentCUDAStream();
    c10::cuda::setCurrentCUDAStream(side);
    try {
      g.graph->capture_begin();
    } catch (...) {
      c10::cuda::setCurrentCUDAStream(*g.previous);
      g.previous.reset();
      throw;
    }
    return makeUndefined(env);
  });
}

napi_value graphCaptureEnd(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    Graph& g = graphs().get(getInt(env, a[0], "graph"), "graph");
    if (!g.previous) throw ArgError("graph is not capturing");
    auto side = c10::cuda::getCurrentCUDAStream();
    auto restore = [&] {
      c10::Event ev(c10::DeviceType::CUDA);
      ev.record(side.unwrap());
      ev.block(g.previous->unwrap());
      c10::cuda::setCurrentCUDAStream(*g.previous);
      g.previous.reset();
    };
    try {
      g.graph->capture_end();
    } catch (...) {
      restore();
      throw;
    }
    restore();
    return makeUndefined(env);
  });
}

napi_value graphReplay(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    graphs().get(getInt(env, a[0], "graph"), "graph").graph->replay();
    return makeUndefined(env);
  });
}

napi_value graphDispose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    int64_t id = getInt(env, a[0], "graph");
    try {
      Graph& g = graphs().get(id, "graph");
      if (g.previous) {
        // Disposed mid-capture: end the capture and restore the current
        // stream, or the process would stay in capture mode on a side stream.
        try {
          g.graph->capture_end();
        } catch (...) {
        }
        c10::cuda::setCurrentCUDAStream(*g.previous);
        g.previous.reset();
      }
    } catch (const ArgError&) {
      return makeUndefined(env);  // not live: disposing twice is a no-op
    }
    graphs().release(id);
    return makeUndefined(env);
  });
}

#else

napi_value noCuda(napi_env env, napi_callback_info) {
  return guarded(env, [&]() -> napi_value {
    requireCuda();
    throw ArgError("this addon was built against a libtorch without CUDA; rebuild against a CUDA libtorch");
  });
}

#endif

}  // namespace

std::vector<Export> cudaExports() {
#ifdef EPG_WITH_CUDA
  return {{"cudaSynchronize", cudaSynchronize},
          {"cudaSetDevice", cudaSetDevice},
          {"cudaCurrentDevice", cudaCurrentDevice},
          {"cudaMemoryStats", cudaMemoryStats},
          {"cudaResetPeakStats", cudaResetPeakStats},
          {"cudaEmptyCache", cudaEmptyCache},
          {"streamCreate", streamCreate},
          {"streamCurrent", streamCurrent},
          {"streamSetCurrent", streamSetCurrent},
          {"streamSynchronize", streamSynchronize},
          {"streamWait", streamWait},
          {"streamDispose", streamDispose},
          {"graphCreate", graphCreate},
          {"graphCaptureBegin", graphCaptureBegin},
          {"graphCaptureEnd", graphCaptureEnd},
          {"graphReplay", graphReplay},
          {"graphDispose", graphDispose}};
#else
  std::vector<Export> out{{"cudaSynchronize", cudaSynchronize}};
  for (const char* name : {"cudaSetDevice", "cudaCurrentDevice", "cudaMemoryStats", "cudaResetPeakStats", "cudaEmptyCache", "streamCreate",
                           "streamCurrent", "streamSetCurrent", "streamSynchronize", "streamWait",
                           "streamDispose", "graphCreate", "graphCaptureBegin", "graphCaptureEnd",
                           "graphReplay", "graphDispose"})
    out.push_back({name, noCuda});
  return out;
#endif
}

}  // namespace epg
