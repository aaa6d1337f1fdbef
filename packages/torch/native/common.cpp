#include "common.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace epg {

void check(napi_env env, napi_status status, const char* what) {
  if (status == napi_ok) return;
  // Copy the message first: any later N-API call overwrites the error info.
  const napi_extended_error_info* info = nullptr;
  napi_get_last_error_info(env, &info);
  std::string detail = info && info->error_message ? info->error_message : "";
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  // A JS exception is on its way (e.g. thrown by a getter): let it reach the
  // caller as it is, rather than replacing it with a vaguer native error.
  if (pending) throw PendingJsException{};
  std::string msg = std::string("N-API call failed: ") + what;
  if (!detail.empty()) msg += " (" + detail + ")";
  throw std::runtime_error(msg);
}

napi_valuetype typeOf(napi_env env, napi_value v) {
  if (v == nullptr) return napi_undefined;
  napi_valuetype t;
  NAPI_CHECK(env, napi_typeof(env, v, &t));
  return t;
}

bool isNullish(napi_env env, napi_value v) {
  napi_valuetype t = typeOf(env, v);
  return t == napi_undefined || t == napi_null;
}

double getDouble(napi_env env, napi_value v, const char* what) {
  double d;
  if (v == nullptr || napi_get_value_double(env, v, &d) != napi_ok)
    throw ArgError(std::string(what) + ": expected a number");
  return d;
}

int64_t getInt(napi_env env, napi_value v, const char* what) {
  double d;
  if (v == nullptr || napi_get_value_double(env, v, &d) != napi_ok) {
    if (typeOf(env, v) == napi_bigint) {
      int64_t r;
      bool lossless;
      NAPI_CHECK(env, napi_get_value_bigint_int64(env, v, &r, &lossless));
      if (!lossless) throw ArgError(std::string(what) + ": bigint out of int64 range");
      return r;
    }
    throw ArgError(std::string(what) + ": expected an integer");
  }
  if (!std::isfinite(d) || std::floor(d) != d)
    throw ArgError(std::string(what) + ": expected an integer, got " + std::to_string(d));
  if (std::fabs(d) > 9007199254740992.0)
    throw ArgError(std::string(what) + ": integer beyond 2^53; pass a bigint");
  return static_cast<int64_t>(d);
}

bool getBool(napi_env env, napi_value v, const char* what) {
  bool b;
  if (v == nullptr || napi_get_value_bool(env, v, &b) != napi_ok)
    throw ArgError(std::string(what) + ": expected a boolean");
  return b;
}

std::string getString(napi_env env, napi_value v, const char* what) {
  size_t len = 0;
  if (v == nullptr || napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok)
    throw ArgError(std::string(what) + ": expected a string");
  std::string s(len, '\0');
  NAPI_CHECK(env, napi_get_value_string_utf8(env, v, s.data(), len + 1, &len));
  return s;
}

uint32_t arrayLength(napi_env env, napi_value v, const char* what) {
  bool isArray = false;
  if (v == nullptr || napi_is_array(env, v, &isArray) != napi_ok || !isArray)
    throw ArgError(std::string(what) + ": expected an array");
  uint32_t n;
  NAPI_CHECK(env, napi_get_array_length(env, v, &n));
  return n;
}

uint32_t nullableListLength(napi_env env, napi_value v, const char* what) {
  uint32_t n = arrayLength(env, v, what);
  if (n > kMaxNullableList)
    throw ArgError(std::string(what) + ": list of " + std::to_string(n) + " elements is too long (at most " +
                   std::to_string(kMaxNullableList) + ")");
  return n;
}

napi_value element(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  NAPI_CHECK(env, napi_get_element(env, arr, i, &v));
  return v;
}

std::vector<int64_t> getIntList(napi_env env, napi_value v, const char* what) {
  uint32_t n = arrayLength(env, v, what);
  // No allocation sized by the JS length up front: new Array(2**32 - 1) is a
  // cheap JS value but would be a 32 GB vector; its first hole fails instead.
  std::vector<int64_t> out;
  out.reserve(std::min<uint32_t>(n, 64));
  for (uint32_t i = 0; i < n; ++i) out.push_back(getInt(env, element(env, v, i), what));
  return out;
}

c10::Device getDevice(napi_env env, napi_value v, const char* what) {
  std::string s = getString(env, v, what);
  std::optional<c10::Device> d;
  try {
    d = c10::Device(s);
  } catch (const c10::Error&) {
  }
  // Only the device types this addon serves; c10 checks a CPU index in debug
  // builds only ('cpu:5'), and narrows an index to 8 bits ('cuda:300' would be
  // some other device): a name must read back as itself.
  if (!d || !(d->is_cpu() || d->is_cuda() || d->is_meta()) || (d->is_cpu() && d->index() > 0) || d->str() != s)
    throw ArgError(std::string(what) + ": invalid device '" + s +
                   "' (expected 'cpu', 'cuda', 'cuda:N' or 'meta')");
  return *d;
}

at::ScalarType getScalarType(napi_env env, napi_value v, const char* what) {
  int64_t code = getInt(env, v, what);
  if (code < 0 || code >= static_cast<int64_t>(at::ScalarType::NumOptions) ||
      code == static_cast<int64_t>(at::ScalarType::Undefined))
    throw ArgError(std::string(what) + ": unknown dtype code " + std::to_string(code));
  return static_cast<at::ScalarType>(code);
}

napi_value makeDouble(napi_env env, double v) {
  napi_value r;
  NAPI_CHECK(env, napi_create_double(env, v, &r));
  return r;
}
napi_value makeInt(napi_env env, int64_t v) {
  napi_value r;
  NAPI_CHECK(env, napi_create_int64(env, v, &r));
  return r;
}
napi_value makeBool(napi_env env, bool v) {
  napi_value r;
  NAPI_CHECK(env, napi_get_boolean(env, v, &r));
  return r;
}
napi_value makeString(napi_env env, const std::string& s) {
  napi_value r;
  NAPI_CHECK(env, napi_create_string_utf8(env, s.data(), s.size(), &r));
  return r;
}
napi_value makeUndefined(napi_env env) {
  napi_value r;
  NAPI_CHECK(env, napi_get_undefined(env, &r));
  return r;
}
napi_value makeNull(napi_env env) {
  napi_value r;
  NAPI_CHECK(env, napi_get_null(env, &r));
  return r;
}
napi_value makeArray(napi_env env, size_t n) {
  napi_value r;
  NAPI_CHECK(env, napi_create_array_with_length(env, n, &r));
  return r;
}
void setElement(napi_env env, napi_value arr, uint32_t i, napi_value v) {
  NAPI_CHECK(env, napi_set_element(env, arr, i, v));
}
void setProp(napi_env env, napi_value obj, const char* name, napi_value v) {
  NAPI_CHECK(env, napi_set_named_property(env, obj, name, v));
}
napi_value makeObject(napi_env env) {
  napi_value r;
  NAPI_CHECK(env, napi_create_object(env, &r));
  return r;
}

// ---- tensor table ----

int32_t TensorTable::put(at::Tensor t) {
  if (!t.defined()) return -1;
  ++live_;
  if (!free_.empty()) {
    int32_t id = free_.back();
    free_.pop_back();
    slots_[id] = std::move(t);
    return id;
  }
  if (slots_.size() >= static_cast<size_t>(INT32_MAX))
    throw std::runtime_error("too many live tensors");
  slots_.push_back(std::move(t));
  return static_cast<int32_t>(slots_.size() - 1);
}

bool TensorTable::valid(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < slots_.size() && slots_[id].defined();
}

const at::Tensor& TensorTable::get(int32_t id, const char* what) const {
  if (!valid(id))
    throw ArgError(std::string(what) +
                   ": not a live tensor (it was disposed, or the value is not a Tensor)");
  return slots_[id];
}

void TensorTable::release(int32_t id) {
  if (!valid(id)) return;
  slots_[id] = at::Tensor();
  free_.push_back(id);
  --live_;
}

// The tables are never destroyed: tensors still live at process exit would
// otherwise be freed during static destruction, after the allocators (CUDA's
// caching allocator in particular) may already be gone.
TensorTable& tensors() {
  static auto* table = new TensorTable();
  return *table;
}

HandleTable<at::Generator>& generators() {
  static auto* table = new HandleTable<at::Generator>();
  return *table;
}

at::Tensor getTensor(napi_env env, napi_value v, const char* what) {
  // Exactly an integral number: napi_get_value_int32 would read NaN, 0.5 or
  // 2**32 as id 0 and silently use some other tensor.
  double d;
  if (v == nullptr || napi_get_value_double(env, v, &d) != napi_ok || !(d >= -1 && d <= INT32_MAX) ||
      std::floor(d) != d)
    throw ArgError(std::string(what) + ": expected a Tensor");
  at::Tensor t = tensors().get(static_cast<int32_t>(d), what);
  checkNotDetached(env, t, what);
  return t;
}

napi_value putTensor(napi_env env, at::Tensor t) {
  napi_value r;
  NAPI_CHECK(env, napi_create_int32(env, tensors().put(std::move(t)), &r));
  return r;
}

c10::IValue toIValueUntyped(napi_env env, napi_value v, int depth) {
  if (depth > kMaxNesting)
    throw ArgError("value: nested more than " + std::to_string(kMaxNesting) + " levels deep (a cyclic array?)");
  switch (typeOf(env, v)) {
    case napi_undefined:
    case napi_null:
      return c10::IValue();
    case napi_boolean:
      return getBool(env, v, "value");
    case napi_string:
      return getString(env, v, "value");
    case napi_number: {
      double d = getDouble(env, v, "value");
      if (std::floor(d) == d && !(d == 0 && std::signbit(d)) && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
      return d;
    }
    case napi_object: {
      bool isArray = false;
      NAPI_CHECK(env, napi_is_array(env, v, &isArray));
      if (isArray) {
        uint32_t n = nullableListLength(env, v, "value");
        std::vector<c10::IValue> items;
        for (uint32_t i = 0; i < n; ++i) items.push_back(toIValueUntyped(env, element(env, v, i), depth + 1));
        return c10::ivalue::Tuple::create(std::move(items));
      }
      // {tensor: id} marks a tensor in an untyped context.
      napi_value idv;
      bool has = false;
      NAPI_CHECK(env, napi_has_named_property(env, v, "tensor", &has));
      if (has) {
        NAPI_CHECK(env, napi_get_named_property(env, v, "tensor", &idv));
        return getTensor(env, idv, "tensor");
      }
      throw ArgError("unsupported object value; pass tensors as {tensor: id}");
    }
    default:
      throw ArgError("unsupported value type");
  }
}

// IValue -> JS. Tensors become {tensor: id} so that untyped results (TorchScript)
// can be told apart from numbers; typed operator results use ops.cpp's path.
napi_value fromIValue(napi_env env, const c10::IValue& v) {
  if (v.isTensor()) {
    napi_value o = makeObject(env);
    setProp(env, o, "tensor", putTensor(env, v.toTensor()));
    return o;
  }
  if (v.isNone()) return makeNull(env);
  if (v.isBool()) return makeBool(env, v.toBool());
  if (v.isInt()) return makeInt(env, v.toInt());
  if (v.isDouble()) return makeDouble(env, v.toDouble());
  if (v.isString()) return makeString(env, v.toStringRef());
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    napi_value arr = makeArray(env, elems.size());
    for (size_t i = 0; i < elems.size(); ++i) setElement(env, arr, i, fromIValue(env, elems[i]));
    return arr;
  }
  if (v.isList()) {
    auto list = v.toListRef();
    napi_value arr = makeArray(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) setElement(env, arr, i, fromIValue(env, list[i]));
    return arr;
  }
  if (v.isGenericDict()) {
    napi_value o = makeObject(env);
    for (const auto& kv : v.toGenericDict()) {
      std::string key = kv.key().isString() ? kv.key().toStringRef() : kv.key().tagKind();
      setProp(env, o, key.c_str(), fromIValue(env, kv.value()));
    }
    return o;
  }
  throw std::runtime_error("cannot convert a value of kind " + v.tagKind() + " to JS");
}

void registerAll(napi_env env, napi_value exports, const std::vector<Export>& fns) {
  for (const auto& f : fns) {
    napi_value fn;
    NAPI_CHECK(env, napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &fn));
    NAPI_CHECK(env, napi_set_named_property(env, exports, f.name, fn));
  }
}

std::vector<at::Tensor> tensorList(napi_env env, napi_value v, const char* what, bool allowUndefined) {
  uint32_t n = allowUndefined ? nullableListLength(env, v, what) : arrayLength(env, v, what);
  std::vector<at::Tensor> out;
  out.reserve(std::min<uint32_t>(n, 64));
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e = element(env, v, i);
    if (allowUndefined && isNullish(env, e)) {
      out.emplace_back();
      continue;
    }
    double id;
    if (allowUndefined && napi_get_value_double(env, e, &id) == napi_ok && id == -1) {
      out.emplace_back();
      continue;
    }
    out.push_back(getTensor(env, e, what));
  }
  return out;
}

}  // namespace epg
