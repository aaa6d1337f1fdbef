// Tensor handles: creation from JS memory, reading data back, metadata, disposal.
#include <ATen/ops/from_blob.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace epg {
namespace {

// Zero-copy tensors keep a reference to their JS ArrayBuffer. libtorch may free
// such a tensor on any thread, but references can only be dropped on the JS
// thread: the deleter queues them and the JS thread drains the queue.
std::mutex pendingMutex;
std::vector<napi_ref> pendingRefs;
// Set under the mutex by the deleter: the JS thread's drain (run at every
// dispose) takes the lock only when there is something to drain.
std::atomic<bool> pendingAny{false};

}  // namespace

void releaseZeroCopy(void* ctx) {
  auto* c = static_cast<ZeroCopyContext*>(ctx);
  {
    std::lock_guard<std::mutex> lock(pendingMutex);
    pendingRefs.push_back(c->buffer);
    pendingAny.store(true, std::memory_order_release);
  }
  delete c;
}

void checkNotDetached(napi_env env, const at::Tensor& t, const char* what) {
  if (!t.has_storage()) return;
  const c10::DataPtr& p = t.storage().data_ptr();
  if (p.get_deleter() != &releaseZeroCopy) return;
  auto* ctx = static_cast<ZeroCopyContext*>(p.get_context());
  napi_value ab = nullptr;
  bool detached = false;
  if (napi_get_reference_value(env, ctx->buffer, &ab) != napi_ok || ab == nullptr ||
      napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached)
    throw ArgError(std::string(what) +
                   ": the tensor's memory is a JS ArrayBuffer that was detached (transferred); a zero-copy "
                   "tensor (fromTypedArray with copy: false) needs its buffer for as long as it lives");
}

namespace {

void drainReleasedBuffers(napi_env env) {
  if (!pendingAny.load(std::memory_order_acquire)) return;
  std::vector<napi_ref> refs;
  {
    std::lock_guard<std::mutex> lock(pendingMutex);
    refs.swap(pendingRefs);
    pendingAny.store(false, std::memory_order_relaxed);
  }
  for (napi_ref r : refs) napi_delete_reference(env, r);
}

at::ScalarType scalarTypeOf(napi_env env, napi_value v) {
  at::ScalarType t = getScalarType(env, v, "dtype");
  // Quantized tensors need a quantizer, which raw bytes do not carry.
  if (c10::isQIntType(t))
    throw ArgError(std::string("dtype: cannot make a ") + c10::toString(t) + " tensor from raw bytes");
  return t;
}

std::vector<int64_t> shapeOf(napi_env env, napi_value v) {
  auto shape = getIntList(env, v, "shape");
  for (int64_t s : shape)
    if (s < 0) throw ArgError("shape: sizes must be non-negative, got " + std::to_string(s));
  return shape;
}

// fromBuffer(typedArray, dtype, shape, copy) -> tensor id
napi_value fromBuffer(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    drainReleasedBuffers(env);
    bool isTyped = false;
    if (a[0] == nullptr || napi_is_typedarray(env, a[0], &isTyped) != napi_ok || !isTyped)
      throw ArgError("data: expected a TypedArray");
    napi_typedarray_type ttype;
    size_t length;
    void* data;
    napi_value arraybuffer;
    size_t offset;
    NAPI_CHECK(env, napi_get_typedarray_info(env, a[0], &ttype, &length, &data, &arraybuffer, &offset));
    at::ScalarType dtype = scalarTypeOf(env, a[1]);
    auto shape = shapeOf(env, a[2]);
    bool copy = a.argc > 3 ? getBool(env, a[3], "copy") : true;
    size_t elemSize = c10::elementSize(dtype);
    // Byte length of the view: element count times the TypedArray's element size.
    size_t bytesPerElement = 1;
    switch (ttype) {
      case napi_int16_array:
      case napi_uint16_array: bytesPerElement = 2; break;
      case napi_int32_array:
      case napi_uint32_array:
      case napi_float32_array: bytesPerElement = 4; break;
      case napi_float64_array:
      case napi_bigint64_array:
      case napi_biguint64_array: bytesPerElement = 8; break;
      default: bytesPerElement = 1;
    }
    size_t byteLength = length * bytesPerElement;
    int64_t numel = 1;
    for (int64_t s : shape) {
      if (s != 0 && numel > INT64_MAX / s) throw ArgError("shape: too many elements");
      numel *= s;
    }
    if (static_cast<uint64_t>(numel) > SIZE_MAX / elemSize || static_cast<size_t>(numel) * elemSize != byteLength)
      throw ArgError("data: " + std::to_string(byteLength) + " bytes do not fill shape of " +
                     std::to_string(numel) + " elements of " + std::to_string(elemSize) + " bytes");
    auto options = at::TensorOptions().dtype(dtype).device(at::kCPU);
    if (copy || byteLength == 0) {
      at::Tensor t = at::empty(shape, options);
      if (byteLength) std::memcpy(t.data_ptr(), data, byteLength);
      return putTensor(env, std::move(t));
    }
    // A resizable ArrayBuffer can shrink under the tensor (V8 then unmaps the
    // pages: reading them is a segfault), so it is only ever copied.
    bool resizable = false;
    napi_value prop;
    if (napi_get_named_property(env, arraybuffer, "resizable", &prop) == napi_ok) {
      napi_get_value_bool(env, prop, &resizable);
    } else {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) throw PendingJsException{};
    }
    if (resizable)
      throw ArgError("data: a resizable ArrayBuffer cannot back a zero-copy tensor (it may shrink); pass copy: true");
    napi_ref ref;
    NAPI_CHECK(env, napi_create_reference(env, arraybuffer, 1, &ref));
    auto* ctx = new ZeroCopyContext{ref};
    at::Tensor t;
    try {
      t = at::for_blob(data, shape).context(ctx, &releaseZeroCopy).options(options).make_tensor();
    } catch (...) {
      releaseZeroCopy(ctx);
      throw;
    }
    return putTensor(env, std::move(t));
  });
}

// The bytes of a tensor, as contiguous CPU memory, in its own dtype.
at::Tensor hostContiguous(const at::Tensor& t) {
  // resolve_conj/resolve_neg: lazily conjugated or negated views (conj(),
  // _neg_view) store the unmodified values.
  return t.detach().to(at::kCPU).resolve_conj().resolve_neg().contiguous();
}

napi_value arrayBufferOf(napi_env env, const at::Tensor& host) {
  size_t bytes = host.numel() * host.element_size();
  void* out;
  napi_value ab;
  NAPI_CHECK(env, napi_create_arraybuffer(env, bytes, &out, &ab));
  if (bytes) std::memcpy(out, host.data_ptr(), bytes);
  return ab;
}

// toBuffer(id) -> ArrayBuffer holding the tensor's elements in row-major order.
napi_value toBuffer(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    const at::Tensor& t = getTensor(env, a[0], "tensor");
    return arrayBufferOf(env, hostContiguous(t));
  });
}

// toBufferAsync(id) -> Promise<ArrayBuffer>. The device-to-host copy (which waits
// for the device) runs on a worker thread, so the event loop keeps running.
struct CopyWork {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  at::Tensor source;
  at::Tensor host;
  std::string error;
};

napi_value toBufferAsync(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    auto w = std::make_unique<CopyWork>();
    w->source = getTensor(env, a[0], "tensor");
    napi_value promise;
    NAPI_CHECK(env, napi_create_promise(env, &w->deferred, &promise));
    napi_value name = makeString(env, "epg.toBufferAsync");
    CopyWork* raw = w.get();
    NAPI_CHECK(env, napi_create_async_work(
                        env, nullptr, name,
                        [](napi_env, void* data) {
                          auto* w = static_cast<CopyWork*>(data);
                          try {
                            w->host = hostContiguous(w->source);
                          } catch (const c10::Error& e) {
                            w->error = e.what_without_backtrace();
                          } catch (const std::exception& e) {
                            w->error = e.what();
                          } catch (...) {
                            w->error = "toBufferAsync: unknown native exception";
                          }
                        },
                        // Runs from libuv: nothing may throw out of it (that would be
                        // std::terminate), so every failure becomes a rejection.
                        [](napi_env env, napi_status status, void* data) {
                          auto* w = static_cast<CopyWork*>(data);
                          std::string error = w->error;
                          if (status != napi_ok && error.empty()) error = "toBufferAsync: the copy was cancelled";
                          if (error.empty()) {
                            try {
                              napi_resolve_deferred(env, w->deferred, arrayBufferOf(env, w->host));
                            } catch (const std::exception& e) {
                              error = e.what();
                            } catch (...) {
                              error = "toBufferAsync: unknown native exception";
                            }
                          }
                          if (!error.empty()) {
                            napi_value msg, code, err;
                            napi_create_string_utf8(env, error.c_str(), NAPI_AUTO_LENGTH, &msg);
                            napi_create_string_utf8(env, "EPG_TORCH", NAPI_AUTO_LENGTH, &code);
                            napi_create_error(env, code, msg, &err);
                            napi_reject_deferred(env, w->deferred, err);
                          }
                          napi_delete_async_work(env, w->work);
                          delete w;
                        },
                        raw, &raw->work));
    if (napi_queue_async_work(env, raw->work) != napi_ok) {
      napi_delete_async_work(env, raw->work);
      throw std::runtime_error("toBufferAsync: cannot queue the copy");
    }
    w.release();  // owned by the completion callback from here on
    return promise;
  });
}

napi_value shape(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    const at::Tensor& t = getTensor(env, a[0], "tensor");
    auto sizes = t.sizes();
    napi_value arr = makeArray(env, sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) setElement(env, arr, i, makeInt(env, sizes[i]));
    return arr;
  });
}

napi_value strides(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    const at::Tensor& t = getTensor(env, a[0], "tensor");
    auto st = t.strides();
    napi_value arr = makeArray(env, st.size());
    for (size_t i = 0; i < st.size(); ++i) setElement(env, arr, i, makeInt(env, st[i]));
    return arr;
  });
}

napi_value dtype(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    return makeInt(env, static_cast<int64_t>(getTensor(env, a[0], "tensor").scalar_type()));
  });
}

napi_value device(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    return makeString(env, getTensor(env, a[0], "tensor").device().str());
  });
}

// flags(id) -> bit set: 1 requiresGrad, 2 contiguous, 4 leaf, 8 has grad.
napi_value flags(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    // mutable_grad() reads .grad without the non-leaf warning that grad() prints.
    at::Tensor t = getTensor(env, a[0], "tensor");
    int32_t f = (t.requires_grad() ? 1 : 0) | (t.is_contiguous() ? 2 : 0) | (t.is_leaf() ? 4 : 0) |
                (t.mutable_grad().defined() ? 8 : 0);
    return makeInt(env, f);
  });
}

napi_value dispose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    // Strictly an integer: napi_get_value_int32 would read NaN or 0.5 as 0 and
    // free someone else's tensor. Integers that name no live tensor are a no-op.
    int64_t id = getInt(env, a[0], "dispose: tensor id");
    if (id >= 0 && id <= INT32_MAX) tensors().release(static_cast<int32_t>(id));
    drainReleasedBuffers(env);
    return makeUndefined(env);
  });
}

// disposeMany(ids: Int32Array): dispose() for each id, in one crossing (a scope's
// exit frees all its tensors at once). Ids that name no live tensor are a no-op.
napi_value disposeMany(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    bool isTyped = false;
    if (a[0] == nullptr || napi_is_typedarray(env, a[0], &isTyped) != napi_ok || !isTyped)
      throw ArgError("disposeMany: expected an Int32Array of tensor ids");
    napi_typedarray_type type;
    size_t length;
    void* data;
    napi_value buffer;
    size_t offset;
    NAPI_CHECK(env, napi_get_typedarray_info(env, a[0], &type, &length, &data, &buffer, &offset));
    if (type != napi_int32_array) throw ArgError("disposeMany: expected an Int32Array of tensor ids");
    const auto* ids = static_cast<const int32_t*>(data);
    for (size_t i = 0; i < length; ++i) tensors().release(ids[i]);
    drainReleasedBuffers(env);
    return makeUndefined(env);
  });
}

napi_value liveTensors(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    drainReleasedBuffers(env);
    return makeInt(env, static_cast<int64_t>(tensors().live()));
  });
}

// dataPtr(id) -> address of the first element, as a number (for tests of views).
napi_value dataPtr(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info);
    return makeDouble(env, static_cast<double>(reinterpret_cast<uintptr_t>(getTensor(env, a[0], "tensor").data_ptr())));
  });
}

}  // namespace

std::vector<Export> tensorExports() {
  return {{"fromBuffer", fromBuffer}, {"toBuffer", toBuffer}, {"toBufferAsync", toBufferAsync},
          {"shape", shape},           {"strides", strides},   {"dtype", dtype},
          {"device", device},         {"flags", flags},       {"dispose", dispose},
          {"disposeMany", disposeMany}, {"liveTensors", liveTensors}, {"dataPtr", dataPtr}};
}

}  // namespace epg
