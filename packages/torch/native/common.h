// Shared helpers of the native addon: N-API error plumbing, the tensor handle
// table and conversions between JS values and c10 types.
//
// The addon is deliberately small and generic (DESIGN.md, "packages/torch"):
// every ATen operator is reached through one boxed dispatcher call (ops.cpp);
// this file holds what all entry points share.
#pragma once

#include <node_api.h>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace epg {

// A wrong JS argument. Becomes a JS TypeError (other exceptions become Error).
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error raised by libtorch, with the operator's name prefixed.
struct TorchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A JS exception is pending (thrown by a getter or proxy that an N-API call ran):
// unwind to the boundary and let that exception reach the caller unchanged.
struct PendingJsException {};

// Throws the pending N-API failure as a C++ exception so that one catch at the
// boundary turns it into a JS exception.
void check(napi_env env, napi_status status, const char* what);
#define NAPI_CHECK(env, call) ::epg::check((env), (call), #call)

// Wraps the body of an exported function: converts C++ exceptions into JS
// exceptions (c10::Error keeps ATen's message, without the C++ backtrace).
template <typename F>
napi_value guarded(napi_env env, F&& body) {
  try {
    return body();
  } catch (const PendingJsException&) {
    // The JS exception is already pending; it propagates as it is.
  } catch (const ArgError& e) {
    napi_throw_type_error(env, "EPG_ARG", e.what());
  } catch (const TorchError& e) {
    napi_throw_error(env, "EPG_TORCH", e.what());
  } catch (const c10::Error& e) {
    napi_throw_error(env, "EPG_TORCH", e.what_without_backtrace());
  } catch (const std::exception& e) {
    napi_throw_error(env, "EPG_NATIVE", e.what());
  } catch (...) {
    napi_throw_error(env, "EPG_NATIVE", "unknown native exception");
  }
  return nullptr;
}

// Fixed-capacity argument reader for napi callbacks.
struct Args {
  static constexpr size_t kMax = 40;
  napi_value argv[kMax];
  size_t argc = kMax;
  napi_value self = nullptr;
  Args(napi_env env, napi_callback_info info) {
    NAPI_CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, nullptr));
    if (argc > kMax) throw ArgError("too many arguments (at most 40)");
  }
  napi_value operator[](size_t i) const { return i < argc ? argv[i] : nullptr; }
};

// ---- primitive conversions ----
napi_valuetype typeOf(napi_env env, napi_value v);
bool isNullish(napi_env env, napi_value v);
double getDouble(napi_env env, napi_value v, const char* what);
int64_t getInt(napi_env env, napi_value v, const char* what);
bool getBool(napi_env env, napi_value v, const char* what);
std::string getString(napi_env env, napi_value v, const char* what);
std::vector<int64_t> getIntList(napi_env env, napi_value v, const char* what);
uint32_t arrayLength(napi_env env, napi_value v, const char* what);
// Lists whose elements may be null/undefined (so that a hole does not stop the
// conversion) are capped: new Array(2**32 - 1) would otherwise become four
// billion entries (an out-of-memory kill) before anything could fail.
constexpr uint32_t kMaxNullableList = 1u << 20;
uint32_t nullableListLength(napi_env env, napi_value v, const char* what);
napi_value element(napi_env env, napi_value arr, uint32_t i);
c10::Device getDevice(napi_env env, napi_value v, const char* what);
// A c10::ScalarType code from JS: rejects Undefined and out-of-range values,
// which ATen would cast unchecked (undefined behaviour).
at::ScalarType getScalarType(napi_env env, napi_value v, const char* what);

napi_value makeDouble(napi_env env, double v);
napi_value makeInt(napi_env env, int64_t v);
napi_value makeBool(napi_env env, bool v);
napi_value makeString(napi_env env, const std::string& s);
napi_value makeUndefined(napi_env env);
napi_value makeNull(napi_env env);
napi_value makeArray(napi_env env, size_t n);
void setElement(napi_env env, napi_value arr, uint32_t i, napi_value v);
void setProp(napi_env env, napi_value obj, const char* name, napi_value v);
napi_value makeObject(napi_env env);

// ---- zero-copy tensors ----
// A tensor over a JS ArrayBuffer holds a reference to it through this context;
// the deleter (any thread) queues the reference, the JS thread releases it.
struct ZeroCopyContext {
  napi_ref buffer;
};
void releaseZeroCopy(void* ctx);
// Throws if t's memory is a JS ArrayBuffer that was detached (transferred):
// the memory is then no longer the tensor's to read.
void checkNotDetached(napi_env env, const at::Tensor& t, const char* what);

// ---- tensor handle table ----
// Tensors live in a native table and are named in JS by int32 slot ids (as in
// tfjs-node). This makes "is it live", "how many are live" and stale-handle use
// a checked lookup instead of a dangling pointer. -1 names "no tensor".
class TensorTable {
 public:
  int32_t put(at::Tensor t);
  const at::Tensor& get(int32_t id, const char* what) const;
  bool valid(int32_t id) const;
  void release(int32_t id);
  size_t live() const { return live_; }

 private:
  std::vector<at::Tensor> slots_;
  std::vector<int32_t> free_;
  size_t live_ = 0;
};
TensorTable& tensors();

// A JS array of tensor ids (the capacity reserved up front is capped: a sparse
// array's length says nothing about its contents). With allowUndefined,
// null/undefined/-1 become undefined tensors.
std::vector<at::Tensor> tensorList(napi_env env, napi_value v, const char* what, bool allowUndefined);
// By value (a refcount, not a reference into the table), so that JS code run
// by a later argument conversion (a getter) cannot invalidate it.
at::Tensor getTensor(napi_env env, napi_value v, const char* what);
// A tensor id (or -1 for an undefined tensor) as a JS number.
napi_value putTensor(napi_env env, at::Tensor t);

// Generators, TorchScript modules and other natives use the same pattern.
template <typename T>
class HandleTable {
 public:
  int32_t put(T v) {
    if (!free_.empty()) {
      int32_t id = free_.back();
      free_.pop_back();
      slots_[id] = std::make_unique<T>(std::move(v));
      return id;
    }
    slots_.push_back(std::make_unique<T>(std::move(v)));
    return static_cast<int32_t>(slots_.size() - 1);
  }
  // A reference into the table: copy it (all handle types are cheap to copy)
  // before running anything that may call back into JS and release it.
  T& get(int64_t id, const char* what) {
    if (id < 0 || id >= static_cast<int64_t>(slots_.size()) || !slots_[id])
      throw ArgError(std::string(what) + ": not a live handle (was it disposed?)");
    return *slots_[id];
  }
  void release(int64_t id) {
    if (id < 0 || id >= static_cast<int64_t>(slots_.size()) || !slots_[id]) return;
    slots_[id].reset();
    free_.push_back(static_cast<int32_t>(id));
  }

 private:
  std::vector<std::unique_ptr<T>> slots_;
  std::vector<int32_t> free_;
};

HandleTable<at::Generator>& generators();

// JS value -> IValue for an untyped context (TorchScript inputs) and back.
// Nesting deeper than kMaxNesting (e.g. a cyclic array) is an ArgError.
constexpr int kMaxNesting = 64;
c10::IValue toIValueUntyped(napi_env env, napi_value v, int depth = 0);
napi_value fromIValue(napi_env env, const c10::IValue& v);

// Registration helper.
struct Export {
  const char* name;
  napi_callback fn;
};
void registerAll(napi_env env, napi_value exports, const std::vector<Export>& fns);

// Each source file contributes its exports.
std::vector<Export> opsExports();
std::vector<Export> tensorExports();
std::vector<Export> autogradExports();
std::vector<Export> runtimeExports();
std::vector<Export> cudaExports();
std::vector<Export> distExports();

}  // namespace epg
